import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { subjects } from '../../../../libs/contracts/src';
import { loadConfig } from '../../../../libs/config/src';
import { connectNats } from '../../../../libs/messaging/src/connection';
import { ensureStreams } from '../../../../libs/messaging/src/streams';
import { startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../../../libs/testing/src';
import { startExecutorThread } from './executor-thread';

/*
 * `jobline dev`'s executor thread: startExecutor in a worker thread, driven over its port. The
 * thread runs the build's entry (dist/), as the CLI does: `npm test` builds first (without a
 * build, the start rejects and says so).
 */

let tmp: TempDir;
let server: RunningNatsServer;
let nc: NatsConnection;

beforeAll(async () => {
  tmp = tempDir('jobline-executor-thread-');
  server = await startNatsServer({ storeDir: join(tmp.path, 'nats') });
  nc = await connectNats({ servers: server.url, name: 'test' });
  await ensureStreams(await jetstreamManager(nc));
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
  tmp?.remove();
});

const devConfig = (env: Record<string, string>) =>
  loadConfig({ JOBLINE_DATA_DIR: join(tmp.path, 'data'), JOBLINE_NATS_URL: server.url, JOBLINE_SANDBOX: 'none', JOBLINE_EXECUTOR_CAPACITY: '3', ...env }, 'dev');

function lines() {
  const all: { level: string; text: string }[] = [];
  return {
    all,
    logger: {
      debug: (text: string) => all.push({ level: 'debug', text }),
      log: (text: string) => all.push({ level: 'log', text }),
      warn: (text: string) => all.push({ level: 'warn', text }),
      error: (text: string) => all.push({ level: 'error', text }),
    },
  };
}

describe('the executor thread (dev)', () => {
  it('runs the local executor on its own thread: heartbeats on the bus, its metrics asked of it, its logs forwarded, stop ends it', async () => {
    const log = lines();
    const lost: string[] = [];
    const beats = nc.subscribe(subjects.heartbeat('threaded'), { max: 1 });
    const thread = await startExecutorThread(devConfig({ JOBLINE_EXECUTOR_ID: 'threaded' }), { logger: log.logger, onUnexpectedExit: (why) => lost.push(why) });
    try {
      expect(thread.sandbox?.kind).toBe('none');
      expect(thread.sshHosts).toEqual([]);
      expect(thread.threadId).toBeGreaterThan(0);
      for await (const m of beats) expect(m.subject).toBe('jobline.hb.threaded');
      const metrics = await thread.registry.metrics();
      expect(metrics).toMatch(/^jobline_executor_slots 3$/m);
      expect(metrics).toMatch(/^jobline_executor_slots_busy 0$/m);
      // The sandbox mode is said at start-up (an unsandboxed executor warns), through the dev logger.
      expect(log.all.some((l) => l.text.startsWith('executor: '))).toBe(true);
    } finally {
      await thread.stop();
    }
    await thread.stop();
    expect(lost).toEqual([]);
    // Stopped: no more heartbeats from it.
    const after = nc.subscribe(subjects.heartbeat('threaded'));
    await new Promise((r) => setTimeout(r, 2_500));
    expect(after.getProcessed()).toBe(0);
    after.unsubscribe();
  });

  it('a thread that ends without being asked to is reported, once', async () => {
    const lost: string[] = [];
    const thread = await startExecutorThread(devConfig({ JOBLINE_EXECUTOR_ID: 'crashing' }), { logger: lines().logger, onUnexpectedExit: (why) => lost.push(why) });
    await thread.kill();
    await new Promise((r) => setImmediate(r));
    expect(lost).toEqual([expect.stringMatching(/^the executor thread ended \(exit code 1\)$/)]);
    // Asking it to stop afterwards is harmless.
    await thread.stop();
    expect(lost).toHaveLength(1);
  });

  it('a start that fails rejects with the thread’s error, and no thread is left', async () => {
    const inventory = join(tmp.path, 'bad-inventory.json');
    writeFileSync(inventory, '{"hosts": "not a list"}');
    const lost: string[] = [];
    await expect(startExecutorThread(devConfig({ JOBLINE_EXECUTOR_ID: 'bad', JOBLINE_SSH_INVENTORY: inventory }), { logger: lines().logger, onUnexpectedExit: (why) => lost.push(why) })).rejects.toThrow(/inventory/i);
    expect(lost).toEqual([]);
  });
});
