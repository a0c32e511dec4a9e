import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';

/** The machine's PostgreSQL (trust auth on loopback) unless JOBLINE_TEST_POSTGRES_URL says otherwise. */
export const DEFAULT_TEST_POSTGRES_URL = 'postgres://root@127.0.0.1:5432/test';

export type TestPostgres = { available: true; url: string } | { available: false; url: string; reason: string };

/**
 * Whether a PostgreSQL answers at the test URL, decided synchronously (a child process
 * connects and runs SELECT 1) so a suite can choose between `describe` and a skip that
 * says why. Pass `process.env`.
 */
export function testPostgres(env: NodeJS.ProcessEnv): TestPostgres {
  const url = env.JOBLINE_TEST_POSTGRES_URL || DEFAULT_TEST_POSTGRES_URL;
  const probe = `
    const { Client } = require(${JSON.stringify(require.resolve('pg'))});
    const client = new Client({ connectionString: process.argv[1], connectionTimeoutMillis: 3000 });
    client.connect().then(() => client.query('SELECT 1')).then(
      () => client.end().then(() => process.exit(0)),
      (error) => { process.stderr.write(String(error && error.message || error)); process.exit(1); },
    );`;
  const result = spawnSync(process.execPath, ['-e', probe, url], { encoding: 'utf8', timeout: 10_000 });
  if (result.status === 0) return { available: true, url };
  const why = result.error?.message ?? (result.stderr.trim() || `exit ${String(result.status ?? result.signal)}`);
  return { available: false, url, reason: `no PostgreSQL at ${maskPassword(url)} (${why})` };
}

/** A schema name no other test run uses (`jl_test_` + random hex). */
export function randomSchemaName(prefix = 'jl_test_'): string {
  return `${prefix}${randomBytes(6).toString('hex')}`;
}

/** DROP SCHEMA … CASCADE, on a connection of its own. */
export async function dropSchema(url: string, schema: string): Promise<void> {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(schema)) throw new Error(`not a plain schema name: ${schema}`);
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

function maskPassword(url: string): string {
  return url.replace(/^([a-z+]+:\/\/[^:/@]*):.*@/i, '$1:***@');
}
