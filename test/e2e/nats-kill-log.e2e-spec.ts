import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { startDevStack, type DevStack } from '../../apps/cli/src/dev-stack';
import { eventually, startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../libs/testing/src';
import { RestClient, quietLogger } from './support';

/**
 * A job that prints while nats-server is killed (kill -9) and down for longer than four
 * JetStream publish timeouts (4 × 5 s): its log is kept whole. Before, the executor gave a
 * chunk three retries within 0.6 s of its timeout, lost it, and still reported the attempt's
 * length; the job succeeded and `GET …/logs` answered 200 with an empty log (what the
 * production-topology run saw once). The check is the log's bytes and their sha256 against
 * what the job printed, and that a read of a log shorter than its recorded length is never a
 * 200 (the reader's DATA_LOSS).
 */
describe('a job printing while nats-server is killed and down for 25 s', () => {
  let dir: TempDir;
  let nats: RunningNatsServer;
  let stack: DevStack;
  let api: RestClient;

  beforeAll(async () => {
    dir = tempDir('jobline-test-kill-log-');
    nats = await startNatsServer({ storeDir: join(dir.path, 'nats') });
    stack = await startDevStack({ dataDir: join(dir.path, 'data'), natsUrl: nats.url, apiPort: 0, executorCapacity: 1, packager: false, logger: quietLogger });
    api = new RestClient(stack.apiUrl!, stack.token);
  });
  afterAll(async () => {
    await stack?.stop();
    await nats?.stop();
    dir?.remove();
  });

  it('succeeds with its whole log: every byte printed during the outage is stored once the server is back', async () => {
    const printed = 'hello from the outage\n';
    const job = await api.submit({ command: `sleep 2; printf '${printed.replace('\n', '\\n')}'` });
    await eventually(async () => (await api.job(job.id)).status === 'running', 20_000, 'the job to run');
    await nats.kill();
    await new Promise((r) => setTimeout(r, 25_000));
    nats = await startNatsServer({ storeDir: join(dir.path, 'nats'), port: nats.port });
    const done = await api.finished(job.id, 60_000);
    expect(done).toMatchObject({ status: 'succeeded', exitCode: 0, logBytes: printed.length });
    const res = await api.request(`/v1/jobs/${job.id}/logs`);
    const body = await res.text();
    expect({ status: res.status, body }).toEqual({ status: 200, body: printed });
    expect(done.logSha256).toBe(createHash('sha256').update(printed).digest('hex'));
  }, 120_000);
});
