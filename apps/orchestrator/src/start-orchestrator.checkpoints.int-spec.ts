import Database from 'better-sqlite3';
import { join } from 'node:path';
import { loadConfig } from '../../../libs/config/src';
import { ChainCheckpointSchema, subjects } from '../../../libs/contracts/src';
import { SqliteChainCheckpointStore, SqliteEventStore, checkpointSignedBy, loadSigningKey, type ChainCheckpoint } from '../../../libs/event-store/src';
import { connectNats } from '../../../libs/messaging/src/connection';
import { startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../../libs/testing/src';
import { recordJob } from '../../api/src/testing/job-history';
import { startOrchestrator, type OrchestratorHandle } from './start-orchestrator';

describe('startOrchestrator signs chain checkpoints (real NATS, SQLite store)', () => {
  let dir: TempDir;
  let server: RunningNatsServer;
  let handle: OrchestratorHandle | undefined;

  beforeEach(async () => {
    dir = tempDir('jobline-orch-checkpoints-');
    server = await startNatsServer({ storeDir: join(dir.path, 'nats') });
  });
  afterEach(async () => {
    await handle?.stop();
    await server.stop();
    dir.remove();
  });

  it('publishes on jobline.chain.checkpoint and keeps in the store a checkpoint of the head, signed by the key file (created)', async () => {
    const config = loadConfig({
      JOBLINE_NATS_URL: server.url,
      JOBLINE_DATA_DIR: dir.path,
      JOBLINE_CHECKPOINT_INTERVAL_MS: '100',
      JOBLINE_ORCHESTRATOR_HTTP_PORT: 'off',
      JOBLINE_LOG_LEVEL: 'error',
    });
    const nc = await connectNats({ servers: server.url, name: 'checkpoint-listener' });
    const received: ChainCheckpoint[] = [];
    const sub = nc.subscribe(subjects.chainCheckpoint());
    const listening = (async () => {
      for await (const m of sub) {
        received.push(ChainCheckpointSchema.parse(m.json()));
        break;
      }
    })();
    handle = await startOrchestrator(config);

    // Another writer's append (as the api's submissions would cause): the checkpointer follows the store's head.
    const writer = new SqliteEventStore({ path: join(dir.path, 'events.db') });
    await recordJob(writer, { owner: 'alice', until: { exitCode: 0 } });
    const position = await writer.headPosition();
    const [head] = await writer.readAll({ after: position - 1 });
    await Promise.race([listening, new Promise((_, reject) => setTimeout(() => reject(new Error('no checkpoint within 20 s')), 20_000))]);
    await writer.close();
    await nc.close();

    const key = loadSigningKey(join(dir.path, 'signing-key.pem'));
    expect(received[0]).toMatchObject({ position, chainHash: head.chain!.chainHash, keyId: key.keyId });
    expect(checkpointSignedBy(received[0], [key.publicKey])).toBe(true);
    const db = new Database(join(dir.path, 'events.db'));
    expect(await new SqliteChainCheckpointStore({ db }).list()).toContainEqual(received[0]);
    db.close();
  });
});
