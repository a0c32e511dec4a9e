/**
 * The REST api as the dashboard uses it: same origin, the bearer token from this tab's
 * session (or none: under HTTPS the browser's client certificate names the caller).
 * Errors are the api's problem documents.
 */

import type { JobFilters } from './lib/jobs-query';
import { listQuery } from './lib/jobs-query';

export interface Problem {
  status: number;
  title: string;
  detail: string;
  code: string;
  errors?: { path: string; message: string }[];
}

export class ApiError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail || problem.title);
  }
}

export interface Caller {
  owner: string;
  admin: boolean;
}

/** One step of a staged job (README "Staged pipelines"). */
export interface Step {
  step: number;
  name: string;
  status: string;
  continueOnFailure: boolean;
  exitCode: number | null;
  startedAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
  logOffset: number | null;
  logEnd: number | null;
  interrupted: boolean;
  artifacts: { files: number; bytes: number } | null;
}

export interface JobView {
  id: string;
  owner: string;
  status: string;
  priority: 'low' | 'normal' | 'high';
  spec: Record<string, unknown> & { command?: string | string[]; steps?: { name: string; run: string }[] };
  submittedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  attempt: number;
  exitCode: number | null;
  signal: string | null;
  reason: string | null;
  executor: string | null;
  sandbox: string | null;
  bundleDigest: string | null;
  usage: { cpuMs: number; maxRssBytes: number } | null;
  logBytes: number;
  /** sha256 (hex) of the latest attempt's log, once it finished. */
  logSha256: string | null;
  /** The finished job this one re-runs. */
  rerunOf: string | null;
  cancelRequested: boolean;
  purged: boolean;
  /** Staged jobs, once the api reports steps. */
  steps?: Step[];
}

export interface JobsPage {
  items: JobView[];
  total: number;
  nextCursor: string | null;
}

export interface JobEvent {
  position: number;
  id: string;
  type: string;
  version: number;
  occurredAt: string;
  actor: string;
  causationId?: string | null;
  correlationId?: string | null;
  data: Record<string, unknown>;
}

export interface ExecutorInfo {
  id: string;
  kind: 'local' | 'ssh';
  capacity: number;
  running: number;
  labels: Record<string, string>;
  sandbox: string;
  runtime: string;
  startedAt: string;
  lastSeen: string;
  heartbeatAgeMs?: number;
  alive: boolean;
  state?: string;
  note?: string;
}

export interface TimelineBucket {
  start: string;
  submitted: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  timedOut: number;
}

export interface Timeline {
  from: string;
  to: string;
  bucketSeconds: number;
  buckets: TimelineBucket[];
}

export interface Stats {
  total: number;
  byStatus: Record<string, number>;
}

const TOKEN_KEY = 'jobline.token';

/** The token lives in this tab's sessionStorage only: never in a URL, gone when the tab closes. */
export const tokenStore = {
  get: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set: (t: string) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

async function problemOf(res: Response): Promise<Problem> {
  try {
    const body = (await res.json()) as Partial<Problem>;
    return { status: res.status, title: body.title ?? res.statusText, detail: body.detail ?? '', code: body.code ?? 'http_error', errors: body.errors };
  } catch {
    return { status: res.status, title: res.statusText, detail: `HTTP ${res.status}`, code: 'http_error' };
  }
}

export async function request(path: string, init: RequestInit = {}, token = tokenStore.get()): Promise<Response> {
  const headers = new Headers(init.headers);
  if (token) headers.set('Authorization', `Bearer ${token}`);
  headers.set('Accept', headers.get('Accept') ?? 'application/json');
  const res = await fetch(path, { ...init, headers, credentials: 'same-origin', cache: 'no-store' });
  if (!res.ok) throw new ApiError(await problemOf(res));
  return res;
}

async function json<T>(path: string, init?: RequestInit): Promise<T> {
  return (await (await request(path, init)).json()) as T;
}

const jobPath = (id: string) => `/v1/jobs/${encodeURIComponent(id)}`;

export const api = {
  me: (token?: string | null) => request('/v1/me', {}, token ?? null).then((r) => r.json() as Promise<Caller>),
  jobs: (f: JobFilters, cursor?: string) => json<JobsPage>(`/v1/jobs${listQuery(f, cursor)}`),
  job: (id: string, at?: string) => json<JobView>(`${jobPath(id)}${at ? `?at=${encodeURIComponent(at)}` : ''}`),
  events: (id: string) => json<{ items: JobEvent[] }>(`${jobPath(id)}/events`).then((r) => r.items),
  manifest: (id: string) => json<Record<string, unknown>>(`${jobPath(id)}/bundle/manifest`),
  cancel: (id: string) => json<{ cancelRequested: true }>(`${jobPath(id)}/cancel`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' }),
  purge: (id: string) => request(jobPath(id), { method: 'DELETE' }).then(() => undefined),
  /** The same spec and the same bundle by digest, as a new job. */
  rerun: (id: string) => json<JobView>(`${jobPath(id)}/rerun`, { method: 'POST' }),
  submit: (spec: unknown, archive?: File): Promise<JobView> => {
    if (archive) {
      const form = new FormData();
      form.set('spec', JSON.stringify(spec));
      form.set('archive', archive);
      return json<JobView>('/v1/jobs', { method: 'POST', body: form });
    }
    return json<JobView>('/v1/jobs', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(spec) });
  },
  stats: (owner?: string) => json<Stats>(`/v1/stats${owner ? `?owner=${encodeURIComponent(owner)}` : ''}`),
  timeline: (bucketSeconds: number, buckets: number) => {
    const to = Math.ceil(Date.now() / (bucketSeconds * 1000)) * bucketSeconds * 1000;
    const from = to - buckets * bucketSeconds * 1000;
    return json<Timeline>(`/v1/stats/timeline?from=${new Date(from).toISOString()}&to=${new Date(to).toISOString()}&bucket=${bucketSeconds}`);
  },
  executors: () => json<{ items: ExecutorInfo[] }>('/v1/executors').then((r) => r.items),
  /** The whole log of one attempt, as the api stores it (for the download). */
  logText: (id: string, attempt: number) => request(`${jobPath(id)}/logs?attempt=${attempt}`, { headers: { Accept: 'text/plain' } }).then((r) => r.blob()),
  openapi: () => fetch('/openapi.json').then((r) => r.json() as Promise<Record<string, unknown>>),
};

export const problemText = (err: unknown): string =>
  err instanceof ApiError ? `${err.problem.title}: ${err.problem.detail}` : err instanceof Error ? err.message : String(err);
