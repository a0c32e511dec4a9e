import { randomUUID } from 'node:crypto';
import { encodeJobEvent, jobStreamName, parseJobSpec, type JobSpecInput } from '../../../../libs/contracts/src';
import { decide, fold, type JobCommand } from '../../../../libs/domain/src';
import type { AppendResult, EventStore } from '../../../../libs/event-store/src/event-store.port';
import { decodeJobEvent } from '../../../../libs/contracts/src';

/**
 * For tests only: records a command against a job the way the orchestrator does
 * (read the stream, fold, decide with the real decider, append at the expected
 * revision), so the api can be tested against real histories without running it.
 */
export async function recordCommand(
  store: EventStore,
  jobId: string,
  command: JobCommand,
  envelope: { occurredAt?: string; actor?: string } = {},
): Promise<AppendResult | null> {
  const stream = jobStreamName(jobId);
  const recorded = await store.readStream(stream);
  const job = fold(recorded.map((r) => decodeJobEvent(r)));
  const events = decide(command, job);
  if (events.length === 0) return null;
  const occurredAt = envelope.occurredAt ?? new Date().toISOString();
  const encoded = events.map((e) =>
    encodeJobEvent(e, { id: randomUUID(), jobId, occurredAt, actor: envelope.actor ?? 'test', causationId: null, correlationId: jobId }),
  );
  return store.appendToStream(stream, encoded, recorded.length ? recorded.length - 1 : 'no_stream');
}

export function spec(input: JobSpecInput) {
  const parsed = parseJobSpec(input);
  if (!parsed.ok) throw new Error(`bad spec: ${JSON.stringify(parsed.issues)}`);
  return parsed.value;
}

/** Submits a job and records whatever else the steps say happened to it, all at `now`. */
export async function recordJob(
  store: EventStore,
  o: {
    jobId?: string;
    owner: string;
    spec?: JobSpecInput;
    now?: string;
    idempotencyKey?: string;
    /** How far it got: queued (default), running, or finished with an exit code. */
    until?: 'queued' | 'running' | { exitCode: number; logBytes?: number } | 'cancelled';
  },
): Promise<string> {
  const jobId = o.jobId ?? randomUUID();
  const now = o.now ?? new Date().toISOString();
  const at = { occurredAt: now };
  await recordCommand(
    store,
    jobId,
    { type: 'SubmitJob', data: { jobId, owner: o.owner, spec: spec(o.spec ?? { command: ['true'] }), now, ...(o.idempotencyKey ? { idempotencyKey: o.idempotencyKey } : {}) } },
    at,
  );
  const until = o.until ?? 'queued';
  if (until === 'queued') return jobId;
  if (until === 'cancelled') {
    await recordCommand(store, jobId, { type: 'RequestCancel', data: { actor: { id: o.owner, admin: false }, now } }, at);
    return jobId;
  }
  await recordCommand(store, jobId, { type: 'DispatchJob', data: { attempt: 1, executorId: 'ex-1', now } }, at);
  await recordCommand(store, jobId, { type: 'RecordStarted', data: { attempt: 1, executorId: 'ex-1', startedAt: now, sandbox: 'none' } }, at);
  if (until === 'running') return jobId;
  await recordCommand(
    store,
    jobId,
    {
      type: 'RecordFinished',
      data: { attempt: 1, exitCode: until.exitCode, signal: null, oomKilled: false, durationMs: 1, finishedAt: now, usage: null, logBytes: until.logBytes ?? 0 },
    },
    at,
  );
  return jobId;
}
