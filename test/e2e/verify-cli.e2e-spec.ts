import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { Client } from 'pg';
import { writeFileSync } from 'node:fs';
import { PostgresEventStore, SqliteEventStore, chainCheckpointStoreFor, loadSigningKey, type EventStore } from '../../libs/event-store/src';
import { ChainCheckpointer } from '../../apps/orchestrator/src/chain-checkpointer';
import { dropSchema, randomSchemaName, testPostgres } from '../../libs/testing/src/postgres';
import { tempDir, type TempDir } from '../../libs/testing/src/temp-dir';
import { recordJob } from '../../apps/api/src/testing/job-history';

/** The built CLI (dist/), as `bin/jobline` runs it: `jobline verify` on a real SQLite file and a real PostgreSQL schema. */
const CLI = join(resolve(__dirname, '../..'), 'dist/apps/cli/src/main.js');

const jobline = (args: string[], env: NodeJS.ProcessEnv = {}) => {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
};

async function recordSome(store: EventStore): Promise<string[]> {
  return [
    await recordJob(store, { owner: 'alice', until: { exitCode: 0 } }),
    await recordJob(store, { owner: 'bob', until: 'cancelled' }),
    await recordJob(store, { owner: 'bob', until: 'running' }),
  ];
}

describe('jobline verify (built CLI)', () => {
  let dir: TempDir;
  beforeEach(() => (dir = tempDir('jobline-verify-e2e-')));
  afterEach(() => dir.remove());

  it('on a SQLite data folder: exit 0 intact, then 1 naming the edited position, then --job scopes it', async () => {
    const store = new SqliteEventStore({ path: join(dir.path, 'events.db') });
    const [alice, bob] = await recordSome(store);
    const bobEvents = await store.readStream(`job-${bob}`);
    await store.close();

    const intact = jobline(['verify', '--data-dir', dir.path]);
    expect(intact).toMatchObject({ status: 0 });
    expect(intact.stdout).toMatch(/^event store: intact, \d+ events verified up to position \d+/);

    const db = new Database(join(dir.path, 'events.db'));
    db.prepare("UPDATE events SET data = json_set(data, '$.owner', 'mallory') WHERE position = ?").run(bobEvents[0].position);
    db.close();

    const tampered = jobline(['verify', '--data-dir', dir.path, '--json']);
    expect(tampered.status).toBe(1);
    expect(JSON.parse(tampered.stdout)).toMatchObject({ intact: false, problem: { kind: 'edited', position: bobEvents[0].position, streamId: `job-${bob}` } });
    expect(jobline(['verify', '--data-dir', dir.path]).stdout).toContain(`TAMPERED at position ${bobEvents[0].position} (edited)`);
    expect(jobline(['verify', '--data-dir', dir.path, '--job', alice]).status).toBe(0);
    expect(jobline(['verify', '--data-dir', dir.path, '--job', bob]).status).toBe(1);
  });

  it('a checkpoint the auditor kept catches a truncated tail even after the stored checkpoints were wiped', async () => {
    const store = new SqliteEventStore({ path: join(dir.path, 'events.db') });
    await recordSome(store);
    const signer = new ChainCheckpointer({
      eventStore: store,
      checkpoints: chainCheckpointStoreFor(store)!,
      key: loadSigningKey(join(dir.path, 'signing-key.pem'), { create: true }),
      publish: () => undefined,
      intervalMs: 60_000,
    });
    const checkpoint = (await signer.tick())!;
    await store.close();
    writeFileSync(join(dir.path, 'kept.json'), JSON.stringify(checkpoint));

    const matched = jobline(['verify', '--data-dir', dir.path]);
    expect(matched).toMatchObject({ status: 0 });
    expect(matched.stdout).toContain('signed checkpoints: 1 matched');

    const db = new Database(join(dir.path, 'events.db'));
    db.prepare('DELETE FROM events WHERE position >= ?').run(checkpoint.position - 1);
    db.prepare('DELETE FROM chain_checkpoints').run();
    db.close();
    expect(jobline(['verify', '--data-dir', dir.path]).status).toBe(0);
    const caught = jobline(['verify', '--data-dir', dir.path, '--checkpoint', join(dir.path, 'kept.json')]);
    expect(caught.status).toBe(1);
    expect(caught.stdout).toContain(`TAMPERED at position ${checkpoint.position - 1} (truncated)`);

    // A kept checkpoint that no trusted key signed is refused, not silently ignored.
    writeFileSync(join(dir.path, 'forged.json'), JSON.stringify({ ...checkpoint, chainHash: 'f'.repeat(64) }));
    const forged = jobline(['verify', '--data-dir', dir.path, '--checkpoint', join(dir.path, 'forged.json')]);
    expect(forged.status).toBe(2);
    expect(forged.stderr).toMatch(/not signed by a trusted key/);
  });

  it('exits 2 when there is no store to verify (and creates none)', () => {
    const r = jobline(['verify', '--data-dir', join(dir.path, 'nothing-here')]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/cannot verify: no event store at .*events\.db/);
  });

  const postgres = testPostgres(process.env);
  (postgres.available ? it : it.skip)('on PostgreSQL (--store URL): exit 1 naming a removed event', async () => {
    const schema = randomSchemaName();
    const url = `${postgres.url}${postgres.url.includes('?') ? '&' : '?'}schema=${schema}`;
    try {
      const store = new PostgresEventStore({ connectionString: postgres.url, schema });
      const [, bob] = await recordSome(store);
      const bobEvents = await store.readStream(`job-${bob}`);
      await store.close();
      expect(jobline(['verify', '--store', url]).status).toBe(0);

      const raw = new Client({ connectionString: postgres.url });
      await raw.connect();
      await raw.query(`DELETE FROM "${schema}".events WHERE position = $1`, [bobEvents[1].position]);
      await raw.end();

      const r = jobline(['verify', '--json'], { JOBLINE_EVENT_STORE: url });
      expect(r.status).toBe(1);
      expect(JSON.parse(r.stdout)).toMatchObject({ intact: false, problem: { kind: 'removed', position: bobEvents[1].position } });
    } finally {
      await dropSchema(postgres.url, schema);
    }
  });
});
