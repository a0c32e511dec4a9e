/**
 * The jobs view's filters, kept in the page URL (so a filtered list can be bookmarked or
 * shared) and turned into the query of GET /v1/jobs. Pure: no DOM, no fetch.
 */

export const STATUSES = ['pending', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out'] as const;
export const PRIORITIES = ['low', 'normal', 'high'] as const;
export const ORDERS = ['-submittedAt', 'submittedAt', '-priority', 'priority'] as const;
export type Status = (typeof STATUSES)[number];
export type Priority = (typeof PRIORITIES)[number];
export type Order = (typeof ORDERS)[number];

export interface JobFilters {
  status: Status[];
  priority: Priority[];
  /** Admins only (the api refuses another owner to everyone else). */
  owner: string;
  executor: string;
  /** ISO-8601 instants, or '' for no bound. */
  from: string;
  to: string;
  order: Order;
  limit: number;
}

export const DEFAULT_FILTERS: JobFilters = { status: [], priority: [], owner: '', executor: '', from: '', to: '', order: '-submittedAt', limit: 20 };

const oneOf = <T extends string>(values: readonly T[], v: string | null): v is T => v !== null && (values as readonly string[]).includes(v);
const list = <T extends string>(values: readonly T[], raw: string | null): T[] =>
  (raw ?? '').split(',').filter((v): v is T => oneOf(values, v));
const instant = (raw: string | null) => (raw && !Number.isNaN(Date.parse(raw)) ? new Date(raw).toISOString() : '');

/** Filters from the page's query string; anything unknown or malformed is dropped. */
export function filtersFromSearch(search: string): JobFilters {
  const q = new URLSearchParams(search);
  const limit = Number(q.get('limit'));
  const order = q.get('order');
  return {
    status: list(STATUSES, q.get('status')),
    priority: list(PRIORITIES, q.get('priority')),
    owner: /^[A-Za-z0-9_-]{1,64}$/.test(q.get('owner') ?? '') ? q.get('owner')! : '',
    executor: /^[A-Za-z0-9_-]{1,64}$/.test(q.get('executor') ?? '') ? q.get('executor')! : '',
    from: instant(q.get('from')),
    to: instant(q.get('to')),
    order: oneOf(ORDERS, order) ? order : DEFAULT_FILTERS.order,
    limit: Number.isInteger(limit) && limit >= 1 && limit <= 100 ? limit : DEFAULT_FILTERS.limit,
  };
}

/** The page's query string for these filters (defaults left out). */
export function filtersToSearch(f: JobFilters): string {
  const q = new URLSearchParams();
  if (f.status.length) q.set('status', f.status.join(','));
  if (f.priority.length) q.set('priority', f.priority.join(','));
  if (f.owner) q.set('owner', f.owner);
  if (f.executor) q.set('executor', f.executor);
  if (f.from) q.set('from', f.from);
  if (f.to) q.set('to', f.to);
  if (f.order !== DEFAULT_FILTERS.order) q.set('order', f.order);
  if (f.limit !== DEFAULT_FILTERS.limit) q.set('limit', String(f.limit));
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** The query of GET /v1/jobs for these filters and a page cursor. */
export function listQuery(f: JobFilters, cursor?: string): string {
  const q = new URLSearchParams();
  if (f.status.length) q.set('status', f.status.join(','));
  if (f.priority.length) q.set('priority', f.priority.join(','));
  if (f.owner) q.set('owner', f.owner);
  if (f.executor) q.set('executor', f.executor);
  if (f.from) q.set('submittedFrom', f.from);
  if (f.to) q.set('submittedTo', f.to);
  q.set('order', f.order);
  q.set('limit', String(f.limit));
  if (cursor) q.set('cursor', cursor);
  return `?${q.toString()}`;
}

/** Whether a job (as a status frame or a view describes it) passes the filters that a frame can tell. */
export function mayMatch(f: JobFilters, job: { status: string; owner?: string }): boolean {
  if (f.status.length && !(f.status as string[]).includes(job.status)) return false;
  if (f.owner && job.owner !== undefined && job.owner !== f.owner) return false;
  return true;
}

/** `<input type="datetime-local">` value (local time, minutes) ↔ an ISO instant. */
export function toLocalInput(iso: string): string {
  if (!iso) return '';
  const d = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fromLocalInput(value: string): string {
  if (!value) return '';
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? '' : new Date(ms).toISOString();
}
