import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Pool, type ClientConfig, type PoolClient, type QueryResultRow } from 'pg';

export interface PostgresConnectionOptions {
  /** `postgres://user:password@host:5432/database?sslmode=…` (anything node-postgres accepts). */
  connectionString: string;
  /**
   * Schema that holds Jobline's tables, created on first use: letters, digits and `_`,
   * starting with a letter or `_`, at most 48 characters. Default `jobline`.
   */
  schema?: string;
  /** Connections in the pool (a subscription's listener is one more). Default 10. */
  maxConnections?: number;
  /** Shown in pg_stat_activity. Default `jobline`. */
  applicationName?: string;
  /** How long opening a connection may take. Default 10000. */
  connectTimeoutMs?: number;
  /**
   * How often a statement is tried again after a lost connection (the server restarted, a
   * proxy dropped it), waiting 100 ms, then twice as long each time, at most 2 s. Default 5.
   */
  retries?: number;
}

export const DEFAULT_POSTGRES_SCHEMA = 'jobline';
const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,47}$/;

/** Both ints of an advisory lock key: this class (`JLN\1`) and a hash of the schema. */
const DDL_LOCK_CLASS = 0x4a4c4e01;

/**
 * One pool on one schema, shared by the PostgreSQL event, checkpoint and snapshot stores
 * (pass `{ database }` to each; whoever built it closes it). Creates its tables on first
 * use, safely when several processes start at once.
 */
export class PostgresDatabase {
  readonly schema: string;
  readonly pool: Pool;
  private readonly clientConfig: ClientConfig;
  private readonly retries: number;
  private readonly ensured = new Map<string, Promise<void>>();
  private ended = false;

  constructor(options: PostgresConnectionOptions) {
    this.schema = options.schema ?? DEFAULT_POSTGRES_SCHEMA;
    if (!SCHEMA_NAME.test(this.schema)) {
      throw new Error(
        `PostgreSQL schema ${JSON.stringify(this.schema)} is not a plain name (letters, digits, _; at most 48 characters)`,
      );
    }
    const maxConnections = options.maxConnections ?? 10;
    if (!Number.isSafeInteger(maxConnections) || maxConnections < 1) {
      throw new Error(`maxConnections must be a positive integer, not ${String(options.maxConnections)}`);
    }
    this.retries = Math.max(0, Math.trunc(options.retries ?? 5));
    this.clientConfig = {
      connectionString: options.connectionString,
      application_name: options.applicationName ?? 'jobline',
      connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
      keepAlive: true,
      // The append function relies on READ COMMITTED (each of its statements sees the
      // commits before it took the lock); an `options` in the URL still wins.
      options: '-c default_transaction_isolation=read\\ committed',
    };
    this.pool = new Pool({ ...this.clientConfig, max: maxConnections, idleTimeoutMillis: 30_000 });
    // A pooled connection the server drops while idle is discarded by the pool; without a
    // listener its 'error' event would crash the process.
    this.pool.on('error', () => undefined);
  }

  /** `"schema"."name"`, for SQL text. */
  table(name: string): string {
    return `"${this.schema}"."${name}"`;
  }

  /**
   * Runs `ddl` once per process for `component` (idempotent statements: IF NOT EXISTS, OR
   * REPLACE), creating the schema first, under a transaction-scoped advisory lock so that
   * processes starting together do not race on the catalog. A failure is retried on the
   * next call.
   */
  ensure(component: string, ddl: string): Promise<void> {
    let done = this.ensured.get(component);
    if (!done) {
      done = this.withRetry(() => this.runDdl(ddl));
      this.ensured.set(component, done);
      done.catch(() => this.ensured.delete(component));
    }
    return done;
  }

  /** One statement on a pooled connection, tried again after a lost connection. */
  async query<R extends QueryResultRow = QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
    return this.withRetry(async () => (await this.pool.query<R>(text, values)).rows);
  }

  /** Like `query`, with each row as an array of column values (no per-row objects). */
  async queryRows(text: string, values: unknown[] = []): Promise<unknown[][]> {
    return this.withRetry(async () => (await this.pool.query({ text, values, rowMode: 'array' })).rows as unknown[][]);
  }

  /** A connection of its own, outside the pool (LISTEN), with the same settings. */
  async connectClient(): Promise<Client> {
    const client = new Client({ ...this.clientConfig, application_name: `${this.clientConfig.application_name}-listen` });
    await client.connect();
    return client;
  }

  /** Runs `work` on one pooled connection inside BEGIN … COMMIT (ROLLBACK on a throw). */
  async transaction<T>(work: (client: PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  async withRetry<T>(attempt: () => Promise<T>): Promise<T> {
    for (let failures = 0; ; failures++) {
      try {
        return await attempt();
      } catch (error) {
        if (this.ended || failures >= this.retries || !isConnectionError(error)) throw error;
        await sleep(retryDelayMs(failures));
      }
    }
  }

  get closed(): boolean {
    return this.ended;
  }

  async close(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.pool.end();
  }

  private async runDdl(ddl: string): Promise<void> {
    await this.transaction(async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [DDL_LOCK_CLASS, this.schema]);
      // CREATE SCHEMA IF NOT EXISTS needs the CREATE right even when the schema exists,
      // so a user limited to an existing schema would fail without this check.
      const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [this.schema]);
      if (exists.rowCount === 0) await client.query(`CREATE SCHEMA "${this.schema}"`);
      await client.query(ddl);
    });
  }
}

/** 100 ms, 200 ms, … at most 2 s. */
export function retryDelayMs(failures: number): number {
  return Math.min(2_000, 100 * 2 ** Math.min(failures, 5));
}

/**
 * A failure of the connection rather than of the statement: the same statement may succeed
 * on a new connection. (Appends are safe to repeat: a repeated append with the same event
 * ids is answered with the first one's result.)
 */
export function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') {
    // SQLSTATE class 08 (connection exception), 57P01-03 (admin/crash shutdown, cannot
    // connect now), and the socket errors of an unreachable or restarting server.
    if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03') return true;
    if (['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'].includes(code)) return true;
  }
  // node-postgres and its pool report these without a code.
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|Connection is closed/i.test(
    error.message,
  );
}

/**
 * The URL with its password (in the authority or a `password=` parameter) replaced by `***`.
 * Up to the last `@`, so an unescaped `@` in a password is not half shown.
 */
export function maskPostgresUrl(url: string): string {
  return url.replace(/^([a-z+]+:\/\/[^:/@]*):.*@/i, '$1:***@').replace(/([?&]password=)[^&]*/gi, '$1***');
}
