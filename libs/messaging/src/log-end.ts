import type { JobEvent } from '../../contracts/src';

/** Where one attempt's log ends, as its job's history tells it. */
export interface AttemptLogEnd {
  /** The attempt will write nothing more that belongs to its log: it finished, was stopped, lost or superseded, or the job ended. */
  over: boolean;
  /**
   * Bytes the attempt wrote (stdout and stderr together), when the event that ended it
   * recorded them (JobCompleted, a confirmed JobCancelled); null when none did (timed out,
   * lost, superseded, a forced cancel).
   */
  recordedBytes: number | null;
  /** The job's logs were purged: there is nothing to read. */
  purged: boolean;
}

/**
 * The end of attempt `attempt`'s log, from the job's events in stream order. A log ends
 * when its bytes equal the recorded length; where no length was recorded, a reader drains
 * what the logs stream holds for the job when it learns the attempt is over (see LogReader).
 * Which events end an attempt:
 * - JobCompleted of the attempt (its logBytes), JobCancelled of the attempt or before any
 *   (its logBytes when the executor confirmed), JobTimedOut, JobLost, JobFailed of the attempt
 *   or before any, JobPackagingFailed; any such event carrying a numeric `logBytes` counts it;
 * - any later attempt being queued, dispatched, started or scheduled (superseded);
 * - JobPurged (nothing is left to read).
 */
export function attemptLogEnd(events: readonly JobEvent[], attempt: number): AttemptLogEnd {
  let over = false;
  let recordedBytes: number | null = null;
  let purged = false;
  const end = (data: { attempt?: number | null; logBytes?: unknown }, ownsNull = false) => {
    if (data.attempt === attempt || (ownsNull && data.attempt === null)) {
      over = true;
      if (data.attempt === attempt && typeof data.logBytes === 'number' && Number.isSafeInteger(data.logBytes) && data.logBytes >= 0) recordedBytes = data.logBytes;
    }
  };
  for (const e of events) {
    switch (e.type) {
      case 'JobCompleted':
      case 'JobTimedOut':
      case 'JobAttemptStopped':
      case 'JobLost':
        end(e.data);
        break;
      case 'JobCancelled':
      case 'JobFailed':
        end(e.data, true);
        break;
      case 'JobPackagingFailed':
        over = true;
        break;
      case 'JobQueued':
      case 'JobDispatched':
      case 'JobStarted':
        if (e.data.attempt > attempt) over = true;
        break;
      case 'JobRetryScheduled':
        if (e.data.nextAttempt > attempt) over = true;
        break;
      case 'JobPurged':
        over = true;
        purged = true;
        break;
      case 'JobSubmitted':
      case 'JobPackaged':
      case 'JobCancelRequested':
      case 'JobStepStarted':
      case 'JobStepFinished':
        break;
      default: {
        // A new event type does not compile until it is placed here.
        const unhandled: never = e;
        void unhandled;
      }
    }
  }
  return { over, recordedBytes, purged };
}
