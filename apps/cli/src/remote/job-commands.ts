import type { JobStatus, JobView } from '../../../../libs/contracts/src';
import { PLAIN, type Style } from '../terminal-style';
import { EXIT, type JobsRemote } from './jobs-remote';
import { writeFileSync } from 'node:fs';
import { isTerminal } from '../../../../libs/contracts/src';
import {
  comparisonFromPb,
  endFrameFromPb,
  envelopeFromPb,
  eventItemFromPb,
  executorsAtFromPb,
  jobViewFromPb,
  jobsPageFromPb,
  logFrameFromPb,
  statusFromPbName,
  type EventItem,
  type JobComparisonJson,
} from './json-shapes';

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
  notify?: string[];
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
  if (j.logSha256) rows.push(['log sha256', j.logSha256]);
  if (j.bundleDigest) rows.push(['bundle', j.bundleDigest]);
  if (j.rerunOf) rows.push(['rerun of', j.rerunOf]);
  return rows.map(([k, v]) => `${k.padEnd(10)} ${v}\n`).join('') + stepLines(j, style);
}

/** A staged job's steps, one line each: number, name, status, exit code, duration, log range. */
function stepLines(j: JobView, style: Style): string {
  if (!j.steps?.length) return '';
  const width = Math.max(...j.steps.map((s) => s.name.length));
  let text = 'steps\n';
  for (const s of j.steps) {
    const parts = [`  ${String(s.step).padStart(2)}. ${s.name.padEnd(width)}  ${style.status(s.status.padEnd(9))}`];
    if (s.exitCode !== null) parts.push(`exit ${s.exitCode}`);
    if (s.durationMs !== null) parts.push(`${Math.round(s.durationMs)} ms`);
    if (s.logOffset !== null) parts.push(`log ${s.logOffset}-${s.logEnd ?? ''}`);
    if (s.continueOnFailure) parts.push('(continue on failure)');
    if (s.interrupted) parts.push('(interrupted)');
    if (s.artifacts) parts.push(`artifacts ${s.artifacts.files} files, ${s.artifacts.bytes} bytes`);
    text += parts.join('  ') + '\n';
  }
  return text;
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
  if (f.notify?.length) spec.notify = f.notify.map((url) => ({ url }));
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

export interface RerunFlags {
  /** Wait for the re-run to finish, then compare it with the original (exit 0 identical, 1 not). */
  compare?: boolean;
  /** How long --compare waits for the re-run to finish (default 3600 s). */
  waitSeconds?: number;
  /** Between two status checks while waiting (default 500 ms). */
  pollMs?: number;
}

/**
 * `jobline rerun ID [--compare]`: runs a finished job again (same spec, same bundle by digest).
 * Prints the new job's id (`--json`: its view). With --compare it waits for the re-run to
 * finish and prints the comparison: exit 0 when exit code, log digest and artifacts are identical, 1 when not.
 */
export async function rerunCommand(remote: JobsRemote, id: string, f: RerunFlags, asJson: boolean, io: Output): Promise<number> {
  const { job } = await remote.call('Rerun', { jobId: id });
  const view = jobViewFromPb(job);
  if (!f.compare) {
    await io.out(asJson ? json(view) : `${view.id}\n`);
    return EXIT.ok;
  }
  if (io.progress) await io.err(styleOf(io).dim(`jobline: re-run ${view.id} of ${view.rerunOf ?? id} submitted; waiting for it to finish\n`));
  const deadline = Date.now() + (f.waitSeconds ?? 3600) * 1000;
  let status = view.status;
  while (!isTerminal(status)) {
    if (Date.now() > deadline) {
      await io.err(`jobline rerun: ${view.id} has not finished after ${f.waitSeconds ?? 3600} s; compare later: jobline compare ${view.rerunOf ?? id} ${view.id}\n`);
      return EXIT.unavailable;
    }
    await new Promise((r) => setTimeout(r, f.pollMs ?? 500));
    status = jobViewFromPb((await remote.call('Status', { jobId: view.id })).job).status;
  }
  return compareCommand(remote, view.rerunOf ?? id, view.id, asJson, io);
}

const short = (hex: string | null) => (hex ? hex.slice(0, 16) : 'none');

function comparisonLines(c: JobComparisonJson, style: Style): string {
  const side = (label: string, r: JobComparisonJson['a']) =>
    `${label}  ${r.id}  ${style.status(r.status.padEnd(9))}  attempt ${r.attempt}  exit ${r.exitCode ?? '-'}  log ${short(r.logSha256)}  artifacts ${short(r.artifactsSha256)}\n`;
  const verdict = (same: boolean, a: string, b: string) => (same ? `same (${a})` : `DIFFERENT (${a} vs ${b})`);
  return (
    side('a', c.a) +
    side('b', c.b) +
    `exit code  ${verdict(c.same.exitCode, String(c.a.exitCode ?? '-'), String(c.b.exitCode ?? '-'))}\n` +
    `log        ${c.same.logSha256 ? `same (sha256 ${c.a.logSha256})` : c.a.logSha256 && c.b.logSha256 ? `DIFFERENT (sha256 ${short(c.a.logSha256)} vs ${short(c.b.logSha256)})` : 'UNKNOWN (no log digest recorded for one of them)'}\n` +
    `artifacts  ${verdict(c.same.artifacts, c.a.artifactsSha256 ? `sha256 ${short(c.a.artifactsSha256)}` : 'none', c.b.artifactsSha256 ? `sha256 ${short(c.b.artifactsSha256)}` : 'none')}\n` +
    (c.identical ? style.bold('identical') : style.bold(`not identical: ${c.differences.join(', ')}`)) +
    '\n'
  );
}

/** `jobline compare A B`: exit 0 when exit code, log digest and artifact digest are the same, 1 when not. */
export async function compareCommand(remote: JobsRemote, a: string, b: string, asJson: boolean, io: Output): Promise<number> {
  const c = comparisonFromPb(await remote.call('Compare', { jobId: a, otherJobId: b }));
  await io.out(asJson ? json(c) : comparisonLines(c, styleOf(io)));
  return c.identical ? EXIT.ok : EXIT.failure;
}

/**
 * `jobline attestation ID [-o FILE]`: the job's signed provenance over gRPC, as the JSON of
 * GET /v1/jobs/{id}/attestation (to check offline with `jobline verify --attestation FILE`).
 */
export async function attestationCommand(remote: JobsRemote, id: string, outFile: string | undefined, io: Output): Promise<number> {
  const { envelope } = await remote.call('GetAttestation', { jobId: id });
  const text = `${JSON.stringify(envelopeFromPb(envelope))}\n`;
  if (outFile) writeFileSync(outFile, text);
  else await io.out(text);
  return EXIT.ok;
}

/* eslint-enable @typescript-eslint/no-explicit-any */
