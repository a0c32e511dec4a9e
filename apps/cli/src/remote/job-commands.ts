import { EXIT, type JobsRemote } from './jobs-remote';

/** Where a command writes: the process's stdout/stderr in `main`, buffers in tests. */
export interface Output {
  out(data: string | Uint8Array): void | Promise<void>;
  err(data: string | Uint8Array): void | Promise<void>;
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

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader messages are untyped */

const short = (s: string | undefined, prefix: string) => (s ? s.replace(prefix, '').toLowerCase() : '');
const status = (s: string | undefined) => short(s, 'JOB_STATUS_');
const time = (t: any) => (t?.seconds !== undefined ? new Date(t.seconds * 1000 + Math.floor((t.nanos ?? 0) / 1e6)).toISOString() : '-');

function viewLines(j: any): string {
  const rows: [string, string][] = [
    ['id', j.id],
    ['owner', j.owner],
    ['status', status(j.status)],
    ['priority', short(j.priority, 'PRIORITY_')],
    ['attempt', String(j.attempt ?? 0)],
    ['submitted', time(j.submittedAt)],
    ['started', time(j.startedAt)],
    ['finished', time(j.finishedAt)],
  ];
  if (j.exitCode !== undefined) rows.push(['exit code', String(j.exitCode)]);
  if (j.signal) rows.push(['signal', j.signal]);
  if (j.reason) rows.push(['reason', j.reason]);
  if (j.cancelRequested) rows.push(['stop', 'requested']);
  return rows.map(([k, v]) => `${k.padEnd(10)} ${v}\n`).join('');
}

const json = (v: unknown) => `${JSON.stringify(v, (_k, x: unknown) => (Buffer.isBuffer(x) ? x.toString('base64') : x), 2)}\n`;

/** `jobline start [flags] -- CMD...`: one argument is a shell script (sh -c), several are argv. */
export async function startCommand(remote: JobsRemote, command: string[], f: StartFlags, asJson: boolean, io: Output): Promise<number> {
  if (command.length === 0) {
    await io.err('jobline start: nothing to run; usage: jobline start [options] -- CMD [ARGS...]\n');
    return EXIT.usage;
  }
  if ((f.git === undefined) !== (f.commit === undefined)) {
    await io.err('jobline start: --git and --commit go together\n');
    return EXIT.usage;
  }
  const spec: any = command.length === 1 ? { script: command[0] } : { argv: { args: command } };
  if (f.priority) spec.priority = `PRIORITY_${f.priority.toUpperCase()}`;
  if (f.timeout !== undefined) spec.timeoutSeconds = f.timeout;
  if (f.cpu !== undefined || f.memory !== undefined) spec.resources = { ...(f.cpu !== undefined ? { cpu: f.cpu } : {}), ...(f.memory !== undefined ? { memoryMb: f.memory } : {}) };
  if (f.git) spec.source = { git: { url: f.git, commit: f.commit } };
  if (f.data?.length) spec.data = f.data.map((url) => ({ url, path: new URL(url).pathname.split('/').pop() || 'data' }));
  const { job } = await remote.call('Start', { spec });
  await io.out(asJson ? json(job) : `${job.id}\n`);
  return EXIT.ok;
}

export async function statusCommand(remote: JobsRemote, id: string, asJson: boolean, io: Output): Promise<number> {
  const { job } = await remote.call('Status', { jobId: id });
  await io.out(asJson ? json(job) : viewLines(job));
  return EXIT.ok;
}

export async function stopCommand(remote: JobsRemote, id: string, asJson: boolean, io: Output): Promise<number> {
  const { job } = await remote.call('Stop', { jobId: id });
  await io.out(asJson ? json(job) : `stop requested for ${job.id} (status ${status(job.status)})\n`);
  return EXIT.ok;
}

export async function listCommand(remote: JobsRemote, o: { status?: string; limit?: number; owner?: string }, asJson: boolean, io: Output): Promise<number> {
  const page = await remote.call('List', {
    ...(o.status ? { status: `JOB_STATUS_${o.status.toUpperCase()}` } : {}),
    ...(o.limit ? { limit: o.limit } : {}),
    ...(o.owner ? { owner: o.owner } : {}),
  });
  const items: any[] = page.items ?? [];
  if (asJson) await io.out(json({ items, total: page.total ?? 0, nextCursor: page.nextCursor ?? '' }));
  else {
    await io.out(`${'ID'.padEnd(36)}  ${'STATUS'.padEnd(9)}  ${'OWNER'.padEnd(12)}  SUBMITTED\n`);
    for (const j of items) await io.out(`${j.id}  ${status(j.status).padEnd(9)}  ${String(j.owner).padEnd(12)}  ${time(j.submittedAt)}\n`);
  }
  return EXIT.ok;
}

export async function historyCommand(remote: JobsRemote, id: string, asJson: boolean, io: Output): Promise<number> {
  await remote.stream('History', { jobId: id }, async (e) => {
    await io.out(asJson ? `${JSON.stringify({ ...e, data: JSON.parse(e.dataJson ?? 'null'), dataJson: undefined })}\n` : `${String(e.position).padStart(6)}  ${time(e.occurredAt)}  ${e.type.padEnd(20)}  ${e.actor}\n`);
  });
  return EXIT.ok;
}

/**
 * `jobline logs [-f] ID`: stdout chunks to stdout, stderr chunks to stderr, raw bytes.
 * With -f it ends when the job does and returns the job's exit code (1 if it ended without one).
 */
export async function logsCommand(remote: JobsRemote, id: string, follow: boolean, asJson: boolean, io: Output): Promise<number> {
  let code: number = EXIT.ok;
  await remote.stream('Logs', { jobId: id, follow }, async (m) => {
    if (m.chunk) {
      // One JSON object per line; data as base64 (output is bytes, not necessarily text).
      if (asJson) await io.out(`${JSON.stringify({ ...m.chunk, stream: short(m.chunk.stream, 'LOG_STREAM_'), data: Buffer.from(m.chunk.data as Buffer).toString('base64') })}\n`);
      else if (m.chunk.stream === 'LOG_STREAM_STDERR') await io.err(m.chunk.data as Buffer);
      else await io.out(m.chunk.data as Buffer);
    } else if (m.end) {
      code = m.end.exitCode ?? (m.end.status === 'JOB_STATUS_SUCCEEDED' ? 0 : 1);
      if (asJson) await io.out(`${JSON.stringify({ end: { ...m.end, status: status(m.end.status) } })}\n`);
    }
  });
  return code;
}

/* eslint-enable @typescript-eslint/no-explicit-any */
