import { createHash } from 'node:crypto';
import type { JobView, StoredJobEvent } from '../../../libs/contracts/src';
import { evolveJobView } from '../../../libs/domain/src';
import {
  IN_TOTO_STATEMENT_TYPE,
  JOBLINE_PREDICATE_TYPE,
  type InTotoStatement,
  type ResourceDescriptor,
} from '../../../libs/event-store/src/attestation';
import type { RecordedEvent } from '../../../libs/event-store/src/event-store.port';

/** One attempt as its events tell it. */
export interface AttestedAttempt {
  attempt: number;
  executorId: string | null;
  sandbox: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  outcome: 'completed' | 'timedOut' | 'cancelled' | 'lost' | 'unfinished';
  exitCode: number | null;
  signal: string | null;
  oomKilled: boolean | null;
  logBytes: number | null;
  /** sha256 (hex) of the attempt's log as its executor emitted it (null when it reported none). */
  logSha256: string | null;
}

/** The predicate of a job's attestation (predicateType JOBLINE_PREDICATE_TYPE). */
export interface JobRunPredicate {
  job: { id: string; owner: string; status: string; priority: string; submittedAt: string; finishedAt: string | null; spec: unknown };
  bundle: { digest: string; size: number; commit: string | null; dataDigests: Record<string, string> } | null;
  attempts: AttestedAttempt[];
  exit: { status: string; exitCode: number | null; signal: string | null; reason: string | null };
  executor: string | null;
  sandbox: string | null;
  /** The job stream's head: the events attested, and their hash-chain links (null when recorded before the chain existed). */
  history: { events: number; headRevision: number; headPosition: number; streamHash: string | null; chainHash: string | null };
  artifacts: { attempt: number; sha256: string; size: number } | null;
  /** The latest attempt's log by digest: the bytes of GET /v1/jobs/{id}/logs?attempt=N (null when its executor reported no digest). */
  log: { attempt: number; sha256: string; bytes: number } | null;
  attestedAt: string;
}

export interface AttestationInput {
  records: RecordedEvent[];
  events: StoredJobEvent[];
  artifacts: { attempt: number; bytes: Uint8Array } | null;
  now: string;
}

const hex = (digest: string) => digest.replace(/^sha256:/, '');

/** The in-toto statement of a job's history (the caller checked that it exists and has finished). */
export function jobStatement(input: AttestationInput): { view: JobView; statement: InTotoStatement<JobRunPredicate> } {
  let view: JobView | null = null;
  let bundle: JobRunPredicate['bundle'] = null;
  const attempts = new Map<number, AttestedAttempt>();
  const attempt = (n: number) => {
    let a = attempts.get(n);
    if (!a) {
      a = { attempt: n, executorId: null, sandbox: null, startedAt: null, finishedAt: null, outcome: 'unfinished', exitCode: null, signal: null, oomKilled: null, logBytes: null, logSha256: null };
      attempts.set(n, a);
    }
    return a;
  };
  for (const e of input.events) {
    view = evolveJobView(view, e);
    switch (e.type) {
      case 'JobPackaged':
        bundle = { digest: e.data.bundleDigest, size: e.data.size, commit: e.data.commit ?? null, dataDigests: e.data.dataDigests ?? {} };
        break;
      case 'JobDispatched':
        attempt(e.data.attempt).executorId = e.data.executorId;
        break;
      case 'JobStarted':
        Object.assign(attempt(e.data.attempt), { executorId: e.data.executorId, sandbox: e.data.sandbox, startedAt: e.data.startedAt });
        break;
      case 'JobCompleted':
      case 'JobAttemptStopped': {
        const a = attempt(e.data.attempt);
        if (e.type === 'JobCompleted') Object.assign(a, { outcome: 'completed', logSha256: e.data.logSha256 ?? null });
        Object.assign(a, { finishedAt: e.data.finishedAt, exitCode: e.data.exitCode, signal: e.data.signal, oomKilled: e.data.oomKilled, logBytes: e.data.logBytes });
        break;
      }
      case 'JobTimedOut':
        Object.assign(attempt(e.data.attempt), { outcome: 'timedOut', finishedAt: e.data.finishedAt });
        break;
      case 'JobLost':
        Object.assign(attempt(e.data.attempt), { outcome: 'lost', finishedAt: e.data.lostAt });
        break;
      case 'JobCancelled':
        if (e.data.attempt !== null) {
          const a = attempt(e.data.attempt);
          Object.assign(a, { outcome: 'cancelled', finishedAt: e.data.finishedAt, exitCode: e.data.exitCode ?? a.exitCode, signal: e.data.signal ?? a.signal });
        }
        break;
      default:
        break;
    }
  }
  if (!view) throw new Error('a job statement needs the job’s events');
  const head = input.records[input.records.length - 1];
  const artifacts = input.artifacts
    ? { attempt: input.artifacts.attempt, sha256: createHash('sha256').update(input.artifacts.bytes).digest('hex'), size: input.artifacts.bytes.length }
    : null;
  const latest = view.attempt > 0 ? attempts.get(view.attempt) : undefined;
  // Not for a purged job: its log is gone, so the digest names nothing that can be fetched.
  const log = latest?.logSha256 && !view.purged ? { attempt: latest.attempt, sha256: latest.logSha256, bytes: latest.logBytes ?? 0 } : null;
  const subject: ResourceDescriptor[] = [];
  if (head.chain) subject.push({ name: `jobline:job/${view.id}/history`, digest: { sha256: head.chain.streamHash } });
  if (bundle) subject.push({ name: `jobline:job/${view.id}/bundle`, digest: { sha256: hex(bundle.digest) } });
  if (artifacts) subject.push({ name: `jobline:job/${view.id}/artifacts/${artifacts.attempt}`, digest: { sha256: artifacts.sha256 } });
  if (log) subject.push({ name: `jobline:job/${view.id}/log/${log.attempt}`, digest: { sha256: log.sha256 } });
  const predicate: JobRunPredicate = {
    job: { id: view.id, owner: view.owner, status: view.status, priority: view.priority, submittedAt: view.submittedAt, finishedAt: view.finishedAt, spec: view.spec },
    bundle,
    attempts: [...attempts.values()].sort((a, b) => a.attempt - b.attempt),
    exit: { status: view.status, exitCode: view.exitCode, signal: view.signal, reason: view.reason },
    executor: view.executor,
    sandbox: view.sandbox,
    history: {
      events: input.records.length,
      headRevision: head.revision,
      headPosition: head.position,
      streamHash: head.chain?.streamHash ?? null,
      chainHash: head.chain?.chainHash ?? null,
    },
    artifacts,
    log,
    attestedAt: input.now,
  };
  return { view, statement: { _type: IN_TOTO_STATEMENT_TYPE, subject, predicateType: JOBLINE_PREDICATE_TYPE, predicate } };
}
