import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import type { JobView } from '../../libs/contracts/src';
import { eventually } from '../../libs/testing/src';

const ROOT = resolve(__dirname, '../..');
/** The built CLI (`npm test` builds first). */
export const BUILT_CLI = join(ROOT, 'dist/apps/cli/src/main.js');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the built CLI as a user would, without a terminal (so no colours, no progress notes):
 * none of the test process's JOBLINE_*, NO_COLOR or FORCE_COLOR, only `env`; killed after timeoutMs.
 */
export function runCli(args: string[], env: Record<string, string | undefined> = {}, timeoutMs = 60_000): Promise<CliRun> {
  return new Promise((done, fail) => {
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('JOBLINE_') && k !== 'NO_COLOR' && k !== 'FORCE_COLOR'));
    const child = spawn(process.execPath, [BUILT_CLI, ...args], { cwd: ROOT, env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`jobline ${args.join(' ')} did not exit within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
  });
}

/** A small REST client for journeys: what a user with curl would do. */
export class RestClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string,
  ) {}

  request(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`${this.baseUrl}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${this.token}`, ...(init.body ? { 'content-type': 'application/json' } : {}), ...(init.headers ?? {}) },
    });
  }

  async submit(spec: unknown, headers: Record<string, string> = {}): Promise<JobView> {
    const res = await this.request('/v1/jobs', { method: 'POST', body: JSON.stringify(spec), headers });
    if (res.status !== 201 && res.status !== 200) throw new Error(`submit: ${res.status} ${await res.text()}`);
    return (await res.json()) as JobView;
  }

  async job(id: string): Promise<JobView> {
    const res = await this.request(`/v1/jobs/${id}`);
    if (res.status !== 200) throw new Error(`get ${id}: ${res.status} ${await res.text()}`);
    return (await res.json()) as JobView;
  }

  async events(id: string): Promise<{ position: number; id: string; type: string; data: Record<string, unknown> }[]> {
    const res = await this.request(`/v1/jobs/${id}/events`);
    if (res.status !== 200) throw new Error(`events ${id}: ${res.status} ${await res.text()}`);
    return ((await res.json()) as { items: { position: number; id: string; type: string; data: Record<string, unknown> }[] }).items;
  }

  async log(id: string, query = ''): Promise<string> {
    const res = await this.request(`/v1/jobs/${id}/logs${query}`);
    if (res.status !== 200) throw new Error(`logs ${id}: ${res.status} ${await res.text()}`);
    return res.text();
  }

  /** Polls the job until it is in a terminal status. */
  finished(id: string, timeoutMs = 30_000): Promise<JobView> {
    return eventually(async () => {
      const j = await this.job(id);
      return ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(j.status) ? j : undefined;
    }, timeoutMs, `job ${id} to finish`);
  }
}

export const quietLogger = {
  log: () => undefined,
  info: () => undefined,
  debug: () => undefined,
  warn: () => undefined,
  error: (m: string, ...r: unknown[]) => console.error(m, ...r),
};
