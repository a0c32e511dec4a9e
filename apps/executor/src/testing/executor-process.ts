import { connectNats } from '../../../../libs/messaging/src/connection';
import { startNodeExecutor } from '../node/main';
import { startSshExecutor } from '../ssh/ssh-executor';
import { parseSshInventory } from '../ssh/ssh-inventory';

/**
 * Tests only: one executor as a process of its own, started the way a service main starts it
 * (a connection that reconnects forever, the start function), so that a test can kill -9 it,
 * SIGSTOP it or cut its bus. Configured by one JSON argument:
 *
 *   node dist/apps/executor/src/testing/executor-process.js '{"natsUrl":"nats://127.0.0.1:4222","workRoot":"/tmp/w", ...}'
 *
 * Prints `READY <pid>` once it takes work; exits 1 when its connection closes for good, 0 after SIGTERM.
 */

export interface ExecutorProcessConfig {
  natsUrl: string;
  workRoot: string;
  executorId?: string;
  capacity?: number;
  heartbeatMs?: number;
  leaseMs?: number;
  graceMs?: number;
  /** Local executors only (default 'none': tests of the protocol, not of the sandbox). */
  sandbox?: 'none' | 'auto' | 'required';
  /** An SSH inventory (as in the inventory file, paths absolute): SSH executors instead of a local one. */
  sshInventory?: unknown;
  /** Log lines to stderr (default false). */
  verbose?: boolean;
}

async function main(): Promise<void> {
  const c = JSON.parse(process.argv[2] ?? '{}') as ExecutorProcessConfig;
  const line = (level: string) => (fields: Record<string, unknown>, message: string) => {
    if (c.verbose || level === 'error') process.stderr.write(`${level} ${message} ${JSON.stringify(fields, (_k, v) => (v instanceof Error ? v.message : v))}\n`);
  };
  const logger = { info: line('info'), warn: line('warn'), error: line('error') };
  const nc = await connectNats({ servers: c.natsUrl, name: `test-executor-${c.executorId ?? 'ssh'}`, overrides: { reconnectTimeWait: 200, reconnectJitter: 100 } });
  const common = { nc, workRoot: c.workRoot, heartbeatMs: c.heartbeatMs, leaseMs: c.leaseMs, graceMs: c.graceMs, logger };
  const handle = c.sshInventory
    ? await startSshExecutor({ ...common, inventory: parseSshInventory(c.sshInventory), runtime: 'node test' })
    : await startNodeExecutor({ ...common, executorId: c.executorId, capacity: c.capacity, sandbox: c.sandbox ?? 'none' });
  let stopping = false;
  process.once('SIGTERM', () => {
    stopping = true;
    void handle
      .stop()
      .then(() => nc.drain())
      .then(() => process.exit(0));
  });
  // Never a live process with a dead connection.
  void nc.closed().then(() => {
    if (!stopping) process.exit(1);
  });
  process.stdout.write(`READY ${process.pid}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
