import type { FieldIssue } from './job-spec.schema';

/**
 * Domain errors carry a stable code. Each edge maps codes in one place
 * (HTTP status, gRPC status, WebSocket error frame, NATS ack/term).
 */
export type ErrorCode =
  | 'invalid_argument'
  | 'not_found'
  | 'already_exists'
  | 'conflict'
  | 'failed_precondition'
  | 'stale_attempt'
  | 'unauthenticated'
  | 'permission_denied'
  | 'unavailable';

export class JoblineError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class ValidationError extends JoblineError {
  constructor(
    message: string,
    readonly issues: FieldIssue[] = [],
  ) {
    super('invalid_argument', message, { issues });
  }
}
export class NotFoundError extends JoblineError {
  constructor(message: string) {
    super('not_found', message);
  }
}
/** The command does not apply to the job in its current state (e.g. cancel a finished job). */
export class IllegalStateError extends JoblineError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('failed_precondition', message, details);
  }
}
/** A report names an attempt that is no longer current: fencing. */
export class StaleAttemptError extends JoblineError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('stale_attempt', message, details);
  }
}
export class ConflictError extends JoblineError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('conflict', message, details);
  }
}
export class UnavailableError extends JoblineError {
  constructor(message: string) {
    super('unavailable', message);
  }
}
