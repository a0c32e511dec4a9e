import { existsSync } from 'node:fs';
import { eventually } from './eventually';
import { startTestBus } from './test-bus';

/** The shared integration-test bus: its outage helpers, and that stop() always ends. */
describe('startTestBus', () => {
  it('stop() ends after stopServer() without startServer() (a test that failed mid-outage), and removes its folder', async () => {
    const bus = await startTestBus('test-bus-spec');
    await bus.stopServer();
    const stopped = await Promise.race([
      bus.stop().then(() => 'stopped'),
      new Promise((r) => setTimeout(() => r('still draining after 10 s'), 10_000).unref()),
    ]);
    expect(stopped).toBe('stopped');
    expect(existsSync(bus.dir.path)).toBe(false);
  });

  it('startServer() after stopServer() brings the same connection back on the same port', async () => {
    const bus = await startTestBus('test-bus-spec');
    try {
      const port = bus.server.port;
      await bus.stopServer();
      await bus.startServer();
      expect(bus.server.port).toBe(port);
      // The same connection reconnects by itself, and JetStream answers on it.
      const info = await eventually(() => bus.jsm.getAccountInfo().catch(() => undefined), 15_000, 'JetStream on the reconnected connection');
      expect(info.limits).toBeDefined();
    } finally {
      await bus.stop();
    }
  });
});
