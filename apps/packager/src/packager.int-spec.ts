import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PackagingResultSchema, STREAMS, subjects, type PackageJobMessage, type PackagingResult } from '../../../libs/contracts/src';
import { connectNats } from '../../../libs/messaging/src/connection';
import { ensureStreams } from '../../../libs/messaging/src/streams';
import { eventually, startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../../libs/testing/src';
import { Packager, PACKAGER_CONSUMER } from './packager';
import { threeCommitRepo } from './testing/git-repo';

/** The packager's consumer loop against a real nats-server that goes away and comes back on the same port and store. */
describe('Packager through a nats-server outage', () => {
  let dir: TempDir;
  let server: RunningNatsServer;
  let nc: NatsConnection;
  let packager: Packager;
  const results: PackagingResult[] = [];
  const warnings: string[] = [];

  beforeAll(async () => {
    dir = tempDir('jobline-packager-');
    server = await startNatsServer({ storeDir: join(dir.path, 'nats') });
    nc = await connectNats({ servers: server.url, name: 'packager-test', overrides: { reconnectTimeWait: 100, reconnectJitter: 50 } });
    await ensureStreams(await jetstreamManager(nc));
    nc.subscribe(subjects.packagedAll, { callback: (_e, m) => void results.push(PackagingResultSchema.parse(m.json())) });
    packager = await Packager.start(nc, { log: () => undefined, warn: (m) => void warnings.push(m) }, { git: { allowFileUrls: true }, retryMaxMs: 500 });
  });

  afterAll(async () => {
    await packager?.stop();
    await nc?.close();
    await server?.stop();
    dir?.remove();
  });

  async function order(): Promise<string> {
    const repo = join(dir.path, `repo-${randomUUID()}`);
    mkdirSync(repo);
    const commits = threeCommitRepo(repo);
    const jobId = randomUUID();
    const msg: PackageJobMessage = { kind: 'package', jobId, owner: 'alice', spec: { command: ['ls'], priority: 'normal', source: { git: { url: `file://${repo}`, commit: commits[2] } } } };
    await jetstream(nc).publish(subjects.packageWork(jobId), JSON.stringify(msg));
    return jobId;
  }

  it('takes orders again by itself after the bus was away, without flooding its log', async () => {
    const before = await order();
    await eventually(() => results.some((r) => r.jobId === before && r.kind === 'packaged'), 30_000, `the first bundle (${JSON.stringify(results)} ${warnings.join('; ')})`);
    const port = server.port;
    await server.stop();
    await new Promise((r) => setTimeout(r, 5000));
    server = await startNatsServer({ storeDir: join(dir.path, 'nats'), port });
    await eventually(() => nc.flush().then(() => true, () => false), 20_000, 'the connection to be back');
    const after = await order();
    const r = await eventually(() => results.find((x) => x.jobId === after), 30_000, 'a bundle after the outage');
    expect(r.kind).toBe('packaged');
    expect(warnings.length).toBeLessThan(5);
  });

  it('makes its consumer again when it is gone (deleted while it ran), and takes orders', async () => {
    await (await jetstreamManager(nc)).consumers.delete(STREAMS.packages, PACKAGER_CONSUMER);
    const jobId = await order();
    const r = await eventually(() => results.find((x) => x.jobId === jobId), 30_000, 'a bundle after the consumer was deleted');
    expect(r.kind).toBe('packaged');
  });
});
