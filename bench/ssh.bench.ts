/**
 * SSH executor start latency on a warm connection, against a real OpenSSH sshd on loopback
 * (started here with generated keys), side by side with a bare ssh2 exec of the same command:
 *  - bare: exec('echo x') on the warm connection → first stdout byte (the SSH floor: one
 *    channel open + one exec request, plus sshd's own session set-up);
 *  - attempt: SshRunner.launch() → the command is about to run (workspace made, pid recorded),
 *    and launch → exit status;
 *  - overheadMs: attempt start p50 − bare p50. The start path uses the same single exec
 *    channel as the bare run (no extra round trip); after the exit, killing the group and
 *    removing the workspace take two more exec channels, off the start path.
 *
 *   node dist/bench/ssh.bench.js [attempts]      (alone; prints one JSON line)
 */
import { join } from 'node:path';
import { tempDir } from '../libs/testing/src/temp-dir';
import { percentiles, roundMs, withDefaults, type Percentiles } from './bench-kit';
import { parseSshInventory } from '../apps/executor/src/ssh/ssh-inventory';
import { SshRunner } from '../apps/executor/src/ssh/ssh-runner';
import { sshdUnavailable, startTestSshd } from '../apps/executor/src/ssh/testing/sshd';

const silent = { info: () => undefined, warn: () => undefined, error: (f: object, m: string) => console.error(m, f) };

export interface SshBenchOptions {
  /** Attempts measured (default 50, after 5 warm-up runs). */
  attempts: number;
}

export const SSH_DEFAULTS: SshBenchOptions = { attempts: 50 };

export interface SshBenchResult {
  bench: 'ssh';
  skipped?: string;
  attempts?: number;
  bareExecFirstByteMs?: Percentiles;
  attemptStartMs?: Percentiles;
  attemptEndToEndMs?: Percentiles;
  overheadMs?: number;
  execChannelsPerAttempt?: { beforeStart: number; afterExit: number };
}

export async function runSshBench(options: Partial<SshBenchOptions> = {}): Promise<SshBenchResult> {
  const o = withDefaults(SSH_DEFAULTS, options);
  const why = sshdUnavailable();
  if (why) return { bench: 'ssh', skipped: why };
  const dir = tempDir();
  const sshd = await startTestSshd(dir.path);
  const inv = parseSshInventory({
    hosts: [{ name: 'bench', address: '127.0.0.1', port: sshd.port, user: sshd.user, privateKeyFile: sshd.userKeyFile, hostKey: sshd.hostKey, remoteRoot: join(dir.path, 'remote') }],
  });
  const runner = new SshRunner({ host: inv.hosts[0], settings: inv, logger: silent });
  try {
    await runner.conn.get();
    const bare: number[] = [];
    const start: number[] = [];
    const total: number[] = [];
    for (let i = 0; i < o.attempts + 5; i++) {
      let t0 = performance.now();
      const ch = await runner.conn.exec('echo x');
      const closed = new Promise<void>((resolve) => ch.once('close', () => resolve()));
      ch.resume();
      await Promise.race([new Promise<void>((resolve) => ch.once('data', () => resolve())), closed]);
      const b = performance.now() - t0;
      await closed;
      t0 = performance.now();
      const p = await runner.launch({ attemptId: `bench-${i}`, argv: ['echo', 'x'], env: { PATH: '/usr/bin:/bin' } });
      const s = performance.now() - t0;
      for await (const _ of p.stdout) void _;
      await p.wait();
      const t = performance.now() - t0;
      await p.dispose();
      if (i >= 5) {
        bare.push(b);
        start.push(s);
        total.push(t);
      }
    }
    const bareP = percentiles(bare);
    const startP = percentiles(start);
    return {
      bench: 'ssh',
      attempts: o.attempts,
      bareExecFirstByteMs: bareP,
      attemptStartMs: startP,
      attemptEndToEndMs: percentiles(total),
      overheadMs: roundMs(startP.p50Ms - bareP.p50Ms),
      execChannelsPerAttempt: { beforeStart: 1, afterExit: 2 },
    };
  } finally {
    runner.close();
    await sshd.stop();
    dir.remove();
  }
}

if (require.main === module) {
  runSshBench({ attempts: process.argv[2] ? Number(process.argv[2]) : undefined })
    .then((r) => console.log(JSON.stringify(r)))
    .catch((err) => {
      console.error(err);
      process.exit(1);
    });
}
