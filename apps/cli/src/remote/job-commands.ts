import type { JobStatus, JobView } from '../../../../libs/contracts/src';
import { PLAIN, type Style } from '../terminal-style';
import { EXIT, type JobsRemote } from './jobs-remote';
import { endFrameFromPb, eventItemFromPb, executorsAtFromPb, jobViewFromPb, jobsPageFromPb, logFrameFromPb, statusFromPbName, type EventItem } from './json-shapes';

/** Where a command writes: the process's stdout/stderr in `main`, buffers in tests. */
export interface Output {
  out(data: string | Uint8Array): void | Promise<void>;
  err(data: string | Uint8Array): void | Promise<void>;
  /** Colours for human output (default none). */
  style?: Style;
  /** Say on stderr what a waiting command waits for (main: when stderr is a terminal). Default off. */
  progress?: boolean;
}

export interface StartFlags {
  priority?: 'low' | 'normal' | 'high';
  timeout?: number;
  cpu?: number;
  memory?: number;
  git?: string;
  commit?: string;
  data?: string[];
}

export interface ListFlags {
  status?: JobStatus;
  priority?: 'low' | 'normal' | 'high';
  owner?: string;
  limit?: number;
  cursor?: string;
  order?: string;
  /** RFC 3339 (checked by `main`): the list as it stood then. */
  at?: string;
}

/** An RFC 3339 instant (already checked) as a proto Timestamp. */
const timestampOf = (iso: string) => {
  const ms = Date.parse(iso);
  return { seconds: Math.floor(ms / 1000), nanos: (((ms % 1000) + 1000) % 1000) * 1e6 };
};

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader messages are untyped */

const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;
const styleOf = (io: Output) => io.style ?? PLAIN;

function viewLines(j: JobView, style: Style): string {
  const rows: [string, string][] = [
    ['id', j.id],
    ['owner', j.owner],
    ['status', style.status(j.status)],
    ['priority', j.priority],
    ['attempt', String(j.attempt)],
    ['submitted', j.submittedAt],
    ['started', j.startedAt ?? '-'],
    ['finished', j.finishedAt ?? '-'],
  ];
  if (j.executor) rows.push(['executor', j.executor]);
  if (j.exitCode !== null) rows.push(['exit code', String(j.exitCode)]);
  if (j.signal) rows.push(['signal', j.signal]);
  if (j.reason) rows.push(['reason', j.reason]);
  if (j.cancelRequested) rows.push(['stop', 'requested']);
  if (j.usage) rows.push(['usage', `${j.usage.cpuMs} ms cpu, ${j.usage.maxRssBytes} bytes peak memory`]);
  rows.push(['log bytes', String(j.logBytes)]);
  return rows.map(([k, v]) => `${k.padEnd(10)} ${v}\n`).join('');
}

/** `jobline start [flags] -- CMD...`: one argument is a shell script (sh -c), several are argv. */
export async function startCommand(remote: JobsRemote, command: string[], f: StartFlags, asJson: boolean, io: Output): Promise<number> {
  if (command.length === 0) {
    await io.err('jobline start: nothing to run; usage: jobline start [options] -- CMD [ARGS...] (e.g. jobline start -- echo hi)\n');
    return EXIT.usage;
  }
  if ((f.git === undefined) !== (f.commit === undefined)) {
    await io.err('jobline start: --git and --commit go together (a full commit hash: git rev-parse HEAD)\n');
    return EXIT.usage;
  }
  const spec: any = command.length === 1 ? { script: command[0] } : { argv: { args: command } };
  if (f.priority) spec.priority = `PRIORITY_${f.priority.toUpperCase()}`;
  if (f.timeout !== undefined) spec.timeoutSeconds = f.timeout;
  if (f.cpu !== undefined || f.memory !== undefined) spec.resources = { ...(f.cpu !== undefined ? { cpu: f.cpu } : {}), ...(f.memory !== undefined ? { memoryMb: f.memory } : {}) };
  if (f.git) spec.source = { git: { url: f.git, commit: f.commit } };
  if (f.data?.length) spec.data = f.data.map((url) => ({ url, path: new URL(url).pathname.split('/').pop() || 'data' }));
  const { job } = await remote.call('Start', { spec });
  // Just the id on stdout, so `id=$(jobline start -- …)` works.
  await io.out(asJson ? json(jobViewFromPb(job)) : `${job.id}\n`);
  return EXIT.ok;
}

export async function statusCommand(remote: JobsRemote, id: string, asJson: boolean, io: Output): Promise<number> {
  const { job } = await remote.call('Status', { jobId: id });
  const view = jobViewFromPb(job);
  await io.out(asJson ? json(view) : viewLines(view, styleOf(io)));
  return EXIT.ok;
}

export async function stopCommand(remote: JobsRemote, id: string, asJson: boolean, io: Output): Promise<number> {
  const { job } = await remote.call('Stop', { jobId: id });
  const view = jobViewFromPb(job);
  await io.out(asJson ? json(view) : `stop requested for ${view.id} (status ${styleOf(io).status(view.status)}); \`jobline status ${view.id}\` shows when it has stopped\n`);
  return EXIT.ok;
}

/** The `jobline list` arguments that select the same jobs in the same order (for the next page's command line). */
function listArgs(f: ListFlags): string {
  return [f.status && `--status ${f.status}`, f.priority && `--priority ${f.priority}`, f.owner && `--owner ${f.owner}`, f.limit && `--limit ${f.limit}`, f.order && `--order ${f.order}`, f.at && `--at ${f.at}`]
    .filter(Boolean)
    .join(' ');
}

/** `jobline list`: one page, its total, and the command for the next page. */
export async function listCommand(remote: JobsRemote, f: ListFlags, asJson: boolean, io: Output): Promise<number> {
  const page = jobsPageFromPb(
    await remote.call('List', {
      ...(f.status ? { status: `JOB_STATUS_${f.status.toUpperCase()}` } : {}),
      ...(f.priority ? { priority: `PRIORITY_${f.priority.toUpperCase()}` } : {}),
      ...(f.limit ? { limit: f.limit } : {}),
      ...(f.owner ? { owner: f.owner } : {}),
      ...(f.cursor ? { cursor: f.cursor } : {}),
      ...(f.order ? { order: f.order } : {}),
      ...(f.at ? { at: timestampOf(f.at) } : {}),
    }),
  );
  if (asJson) {
    await io.out(json(page));
    return EXIT.ok;
  }
  const style = styleOf(io);
  if (page.items.length > 0) {
    let text = style.bold(`${'ID'.padEnd(36)}  ${'STATUS'.padEnd(9)}  ${'PRIORITY'.padEnd(8)}  ${'OWNER'.padEnd(12)}  SUBMITTED`) + '\n';
    for (const j of page.items) text += `${j.id}  ${style.status(j.status.padEnd(9))}  ${j.priority.padEnd(8)}  ${j.owner.padEnd(12)}  ${j.submittedAt}\n`;
    await io.out(text);
  }
  const what = page.total === 1 ? 'job' : 'jobs';
  const when = f.at ? ` at ${f.at}` : '';
  let footer = page.items.length === 0 ? `no jobs${when}${f.cursor ? ' on this page' : ''} (total ${page.total})\n` : `${page.items.length} of ${page.total} ${what}${when}${f.cursor ? ' (a later page)' : ''}\n`;
  if (page.nextCursor) footer += `next page: jobline list ${[listArgs(f), `--cursor ${page.nextCursor}`].filter(Boolean).join(' ')}\n`;
  await io.out(style.dim(footer.trimEnd()) + '\n');
  return EXIT.ok;
}

/**
 * `jobline executors [--at T]`: the executors with attempts on them (then), each with the
 * caller's jobs on it, and how many jobs were queued waiting for one.
 */
export async function executorsCommand(remote: JobsRemote, f: { at?: string }, asJson: boolean, io: Output): Promise<number> {
  const r = executorsAtFromPb(await remote.call('Executors', f.at ? { at: timestampOf(f.at) } : {}));
  if (asJson) {
    await io.out(json(r));
    return EXIT.ok;
  }
  const style = styleOf(io);
  let text = style.dim(`${f.at ? `at ${f.at}` : `now (${r.at})`}, store position ${r.position}`) + '\n';
  if (r.items.length === 0) text += `no executor had work${f.at ? ' then' : ''}\n`;
  for (const e of r.items) {
    const hidden = e.running - e.jobs.length;
    text += `${style.bold(e.id)}  ${e.running} ${e.running === 1 ? 'attempt' : 'attempts'}${hidden > 0 ? ` (${hidden} of other owners)` : ''}\n`;
    for (const j of e.jobs) text += `  ${j.id}  ${style.status(j.status.padEnd(9))}  attempt ${j.attempt}  ${j.owner.padEnd(12)}  started ${j.startedAt ?? '-'}\n`;
  }
  text += `${r.queued} queued, waiting for an executor${r.queued > 0 ? `: jobline list --status queued${f.at ? ` --at ${f.at}` : ''}` : ''}\n`;
  await io.out(text);
  return EXIT.ok;
}

export async function historyCommand(remote: JobsRemote, id: string, asJson: boolean, io: Output): Promise<number> {
  const items: EventItem[] = [];
  await remote.stream('History', { jobId: id }, async (e) => {
    const item = eventItemFromPb(e);
    if (asJson) items.push(item);
    else await io.out(`${String(item.position).padStart(6)}  ${item.occurredAt}  ${item.type.padEnd(20)}  ${item.actor}\n`);
  });
  // The body of GET /v1/jobs/{id}/events.
  if (asJson) await io.out(json({ items }));
  return EXIT.ok;
}

const WAITING: Partial<Record<JobStatus, string>> = {
  pending: 'is pending (being packaged)',
  queued: 'is queued, waiting for a free executor slot',
};

/**
 * `jobline logs [-f] ID`: stdout chunks to stdout, stderr chunks to stderr, raw bytes.
 * With -f it ends when the job does and returns the job's exit code (1 if it ended without one).
 * `--json` prints one WebSocket-style frame per line: `log` frames, then `end`.
 * Following a job that has not started yet says so on stderr (with `progress`), and again
 * when it starts, so a quiet terminal is not mistaken for a hung one.
 */
export async function logsCommand(remote: JobsRemote, id: string, follow: boolean, asJson: boolean, io: Output): Promise<number> {
  let code: number = EXIT.ok;
  const style = styleOf(io);
  let stopWatching = () => undefined as void;
  let output = false;
  if (follow && io.progress && !asJson) {
    const job = jobViewFromPb((await remote.call('Status', { jobId: id })).job);
    const waiting = WAITING[job.status];
    if (waiting) {
      await io.err(style.dim(`jobline: job ${job.id} ${waiting}; following it (Ctrl-C stops following, the job stays)\n`));
      stopWatching = remote.watch({ jobId: job.id }, (change) => {
        if (output) return;
        const status = statusFromPbName(change.status);
        if (status === 'running') {
          void io.err(style.dim(`jobline: job ${job.id} is running (attempt ${change.attempt ?? 1})\n`));
          stopWatching();
        } else if (status !== job.status && WAITING[status]) void io.err(style.dim(`jobline: job ${job.id} ${WAITING[status]}\n`));
      });
    }
  }
  try {
    await remote.stream('Logs', { jobId: id, follow }, async (m) => {
      if (m.chunk) {
        if (!output) {
          output = true;
          stopWatching();
        }
        if (asJson) await io.out(`${JSON.stringify(logFrameFromPb(id, m.chunk))}\n`);
        else if (m.chunk.stream === 'LOG_STREAM_STDERR') await io.err(m.chunk.data as Buffer);
        else await io.out(m.chunk.data as Buffer);
      } else if (m.end) {
        const end = endFrameFromPb(id, m.end);
        code = end.exitCode ?? (end.status === 'succeeded' ? 0 : 1);
        if (asJson) await io.out(`${JSON.stringify(end)}\n`);
      }
    });
  } finally {
    stopWatching();
  }
  return code;
}

/* eslint-enable @typescript-eslint/no-explicit-any */
