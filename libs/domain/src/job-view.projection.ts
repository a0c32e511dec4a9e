import { isTerminal, type JobEvent, type JobSpec, type JobStatus, type JobView, type StepView } from '../../contracts/src';
import { phaseAfter, type JobPhase } from './job.decider';

/** The public status of an internal phase (DESIGN.md: pending → queued → running → terminal). */
export const publicStatus = (phase: JobPhase): JobStatus => {
  switch (phase) {
    case 'none':
    case 'submitted':
    case 'packaging':
      return 'pending';
    case 'queued':
    case 'retry_wait':
      return 'queued';
    case 'dispatched':
    case 'running':
      return 'running';
    case 'succeeded':
    case 'failed':
    case 'cancelled':
    case 'timed_out':
      return phase;
  }
};

/** A phase the public status stands for: enough for phaseAfter, which the status follows. */
const PHASE_OF_STATUS: Record<JobStatus, JobPhase> = {
  pending: 'submitted',
  queued: 'queued',
  running: 'running',
  succeeded: 'succeeded',
  failed: 'failed',
  cancelled: 'cancelled',
  timed_out: 'timed_out',
};

/** The view's status after `event`, by the decider's own phase machine. */
export const statusAfter = (status: JobStatus, event: JobEvent): JobStatus => publicStatus(phaseAfter(PHASE_OF_STATUS[status], event));

const CANCEL_REQUESTED = 'cancel requested';

/** `: <reason>` of a requested cancel (JobCancelRequested set the view's reason), or nothing. */
const cancelReasonOf = (view: JobView): string =>
  view.cancelRequested && view.reason?.startsWith(CANCEL_REQUESTED) ? view.reason.slice(CANCEL_REQUESTED.length) : '';

/**
 * Folds one event into the read model every surface shows. Pure and total, so a
 * replay from position 0 rebuilds exactly what the live projection holds.
 */
export function evolveJobView(view: JobView | null, event: JobEvent): JobView | null {
  return evolveSteps(evolveJob(view, event), event);
}

function evolveJob(view: JobView | null, event: JobEvent): JobView | null {
  if (event.type === 'JobSubmitted') {
    const d = event.data;
    return {
      id: d.jobId,
      owner: d.owner,
      status: publicStatus(phaseAfter('none', event)),
      priority: d.priority,
      spec: d.spec,
      submittedAt: d.submittedAt,
      startedAt: null,
      finishedAt: null,
      attempt: 0,
      exitCode: null,
      signal: null,
      reason: null,
      executor: null,
      sandbox: null,
      bundleDigest: null,
      usage: null,
      logBytes: 0,
      logSha256: null,
      rerunOf: d.rerunOf ?? null,
      cancelRequested: false,
      purged: false,
    };
  }
  if (!view) return null;
  const status = statusAfter(view.status, event);
  switch (event.type) {
    case 'JobPackaged':
      return { ...view, bundleDigest: event.data.bundleDigest };
    case 'JobPackagingFailed':
      return { ...view, status, reason: `packaging failed: ${event.data.reason}`, finishedAt: event.data.failedAt };
    case 'JobQueued':
      return { ...view, status, attempt: event.data.attempt, priority: event.data.priority };
    // A new attempt running says nothing of the last one's failure (a pending cancel's reason stays).
    case 'JobDispatched':
      return { ...view, status, attempt: event.data.attempt, executor: event.data.executorId, exitCode: null, signal: null, logSha256: null, reason: view.cancelRequested ? view.reason : null };
    case 'JobStarted':
      return { ...view, status, startedAt: event.data.startedAt, sandbox: event.data.sandbox, exitCode: null, signal: null, reason: view.cancelRequested ? view.reason : null };
    case 'JobCompleted': {
      const d = event.data;
      const ok = d.exitCode === 0;
      const reason = ok ? null : (d.error ?? (d.oomKilled ? 'out of memory' : d.signal ? `killed by ${d.signal}` : `exit code ${d.exitCode}`));
      return { ...view, status, exitCode: d.exitCode, signal: d.signal, usage: d.usage, logBytes: d.logBytes, logSha256: d.logSha256 ?? null, finishedAt: d.finishedAt, reason };
    }
    case 'JobTimedOut':
      return { ...view, status, finishedAt: event.data.finishedAt, reason: `timed out after ${event.data.timeoutSeconds}s` };
    case 'JobCancelRequested':
      return { ...view, cancelRequested: true, reason: CANCEL_REQUESTED + (event.data.reason ? `: ${event.data.reason}` : '') };
    case 'JobCancelled': {
      const d = event.data;
      return {
        ...view,
        status,
        finishedAt: d.finishedAt,
        exitCode: d.exitCode ?? view.exitCode,
        signal: d.signal ?? view.signal,
        usage: d.usage ?? view.usage,
        logBytes: d.logBytes ?? view.logBytes,
        reason: (d.forced ? 'cancelled (executor did not confirm the stop)' : 'cancelled') + cancelReasonOf(view),
      };
    }
    case 'JobAttemptStopped': {
      const d = event.data;
      return { ...view, exitCode: d.exitCode, signal: d.signal, usage: d.usage, logBytes: d.logBytes };
    }
    case 'JobLost':
      // While a cancel is pending the job ends cancelled, for the reason it was asked.
      return view.cancelRequested ? view : { ...view, reason: `lost: ${event.data.reason}` };
    case 'JobRetryScheduled':
      return { ...view, status, attempt: event.data.nextAttempt, finishedAt: null, executor: null };
    case 'JobFailed':
      return { ...view, status, reason: event.data.reason, finishedAt: event.data.finishedAt };
    case 'JobPurged':
      return { ...view, purged: true, logBytes: 0 };
    case 'JobStepStarted':
    case 'JobStepFinished':
      return view; // see evolveSteps
  }
}

// ---- staged pipelines (README "Staged pipelines") ----

const pendingSteps = (spec: JobSpec): StepView[] | undefined =>
  spec.steps?.map((s, i) => ({
    step: i + 1,
    name: s.name,
    status: 'pending',
    continueOnFailure: s.continueOnFailure ?? false,
    exitCode: null,
    startedAt: null,
    finishedAt: null,
    durationMs: null,
    logOffset: null,
    logEnd: null,
    interrupted: false,
    artifacts: null,
  }));

/** The view's `steps`: the current attempt's, reset by a new dispatch; what never ran is skipped once the job ends. */
function evolveSteps(view: JobView | null, event: JobEvent): JobView | null {
  if (!view?.steps) {
    if (view && event.type === 'JobSubmitted') {
      const steps = pendingSteps(event.data.spec);
      return steps ? { ...view, steps } : view;
    }
    return view;
  }
  const set = (step: number, change: (s: StepView) => StepView): JobView => ({ ...view, steps: view.steps!.map((s) => (s.step === step ? change(s) : s)) });
  switch (event.type) {
    case 'JobDispatched':
      return { ...view, steps: pendingSteps(view.spec) };
    case 'JobStepStarted': {
      const d = event.data;
      if (d.attempt !== view.attempt) return view;
      return set(d.step, (s) => (s.status === 'pending' ? { ...s, status: 'running', startedAt: d.startedAt, logOffset: d.logOffset } : s));
    }
    case 'JobStepFinished': {
      const d = event.data;
      if (d.attempt !== view.attempt) return view;
      return set(d.step, (s) => ({
        ...s,
        status: d.exitCode === 0 && !d.interrupted ? 'succeeded' : 'failed',
        exitCode: d.exitCode,
        startedAt: d.startedAt,
        finishedAt: d.finishedAt,
        durationMs: d.durationMs,
        logOffset: d.logOffset,
        logEnd: d.logEnd,
        interrupted: d.interrupted ?? false,
        artifacts: d.artifacts ?? null,
      }));
    }
    default:
      if (!isTerminal(view.status)) return view;
      // The job ended: a step never reached was skipped; one left running without a report was cut short.
      if (!view.steps.some((s) => s.status === 'pending' || s.status === 'running')) return view;
      return {
        ...view,
        steps: view.steps.map((s) =>
          s.status === 'pending' ? { ...s, status: 'skipped' } : s.status === 'running' ? { ...s, status: 'failed', interrupted: true, finishedAt: view.finishedAt } : s,
        ),
      };
  }
}
