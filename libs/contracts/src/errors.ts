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
  | 'unavailable'
  /** A client that takes its data too slowly, or asks for more than its share (a quota): refused for good, not retried. */
  | 'resource_exhausted'
  /** Bytes that were recorded are not stored (any more): the log retention discarded them, or they were never stored. */
  | 'data_loss'
  /** Anything unexpected; its details stay in the server's log. */
  | 'internal';

/** gRPC status names (numbers in @grpc/grpc-js `status`); also the codes of WebSocket error frames. */
export type GrpcStatusName =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'RESOURCE_EXHAUSTED'
  | 'UNAVAILABLE'
  | 'DATA_LOSS'
  | 'INTERNAL';

/** The `code` of a WebSocket `{type: "error"}` frame: named like gRPC status codes. */
export type WsErrorCode = GrpcStatusName;

export interface ErrorMapping {
  /** HTTP status of the REST problem. */
  http: number;
  grpc: GrpcStatusName;
  ws: WsErrorCode;
  /** A NATS message whose handler failed with this code: terminated at once, or redelivered with backoff. */
  nats: 'term' | 'retry';
}

/**
 * The one table from domain error codes to every edge. A Record over ErrorCode: a new code
 * does not compile until it is mapped here. Used by the REST problem filter, the gRPC
 * mapping, the WebSocket gateway and the JetStream message settlement.
 */
export const ERROR_TABLE: Record<ErrorCode, ErrorMapping> = {
  invalid_argument: { http: 400, grpc: 'INVALID_ARGUMENT', ws: 'INVALID_ARGUMENT', nats: 'term' },
  not_found: { http: 404, grpc: 'NOT_FOUND', ws: 'NOT_FOUND', nats: 'term' },
  already_exists: { http: 409, grpc: 'ALREADY_EXISTS', ws: 'ALREADY_EXISTS', nats: 'term' },
  conflict: { http: 409, grpc: 'ALREADY_EXISTS', ws: 'ALREADY_EXISTS', nats: 'term' },
  failed_precondition: { http: 409, grpc: 'FAILED_PRECONDITION', ws: 'FAILED_PRECONDITION', nats: 'term' },
  stale_attempt: { http: 409, grpc: 'FAILED_PRECONDITION', ws: 'FAILED_PRECONDITION', nats: 'term' },
  unauthenticated: { http: 401, grpc: 'UNAUTHENTICATED', ws: 'UNAUTHENTICATED', nats: 'retry' },
  permission_denied: { http: 403, grpc: 'PERMISSION_DENIED', ws: 'PERMISSION_DENIED', nats: 'term' },
  unavailable: { http: 503, grpc: 'UNAVAILABLE', ws: 'UNAVAILABLE', nats: 'retry' },
  resource_exhausted: { http: 429, grpc: 'RESOURCE_EXHAUSTED', ws: 'RESOURCE_EXHAUSTED', nats: 'term' },
  data_loss: { http: 410, grpc: 'DATA_LOSS', ws: 'DATA_LOSS', nats: 'term' },
  internal: { http: 500, grpc: 'INTERNAL', ws: 'INTERNAL', nats: 'retry' },
};

export const ERROR_CODES = Object.keys(ERROR_TABLE) as ErrorCode[];
export const isErrorCode = (c: unknown): c is ErrorCode => typeof c === 'string' && Object.prototype.hasOwnProperty.call(ERROR_TABLE, c);

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
/**
 * The actor is neither the job's owner nor an admin. Reported exactly as a job that does not
 * exist (code not_found): an owner never learns of another owner's job (invariant 6).
 */
export class NotOwnerError extends NotFoundError {}
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
/** Log bytes the caller asked for are not stored (retention discarded them, or they never were). */
export class DataLossError extends JoblineError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('data_loss', message, details);
  }
}
/**
 * An owner asked for more than its quota allows (README "Quotas and fair share"): nothing was
 * recorded; `retryAfterSeconds` says when trying again is worth it (REST Retry-After).
 */
export class QuotaExceededError extends JoblineError {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super('resource_exhausted', message, { retryAfterSeconds, problem: { retryAfterSeconds } });
  }
}
export class UnavailableError extends JoblineError {
  constructor(message: string) {
    super('unavailable', message);
  }
}

/** The mapping of anything thrown: a JoblineError's code, else `internal`. */
export const errorMappingOf = (err: unknown): ErrorMapping & { code: ErrorCode } => {
  const code = err instanceof JoblineError ? err.code : 'internal';
  return { code, ...ERROR_TABLE[code] };
};
