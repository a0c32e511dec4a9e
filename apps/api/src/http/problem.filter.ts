import { Catch, HttpException, type ArgumentsHost, type ExceptionFilter, type LoggerService } from '@nestjs/common';
import { STATUS_CODES, type ServerResponse } from 'node:http';
import { ERROR_TABLE, JoblineError, ValidationError, type FieldIssue } from '../../../../libs/contracts/src';

/** An RFC 9457 problem document (application/problem+json). */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  /** The stable error code (same as the gRPC/WebSocket surfaces use). */
  code: string;
  /** Field-level problems of an invalid input, addressed by JSON path. */
  errors?: FieldIssue[];
  [extension: string]: unknown;
}

export const PROBLEM_TYPE_PREFIX = 'urn:jobline:problem:';

const CODE_OF_STATUS: Record<number, string> = {
  400: 'invalid_argument',
  401: 'unauthenticated',
  403: 'permission_denied',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'conflict',
  413: 'invalid_argument',
  415: 'unsupported_media_type',
  503: 'unavailable',
};

/** Maps anything thrown by a handler, guard or pipe to a problem+json response. */
export function toProblem(err: unknown): Problem {
  if (err instanceof JoblineError) {
    // The one table of libs/contracts/src/errors.ts: the same code maps to gRPC and WebSocket there.
    const status = ERROR_TABLE[err.code].http;
    // Extension members (e.g. the jobId of a submission that timed out) never replace the standard ones.
    const extra = err.details?.problem;
    const problem: Problem = {
      ...(extra && typeof extra === 'object' ? extra : {}),
      type: PROBLEM_TYPE_PREFIX + err.code,
      title: STATUS_CODES[status] ?? 'Error',
      status,
      detail: err.message,
      code: err.code,
    };
    if (err instanceof ValidationError && err.issues.length > 0) problem.errors = err.issues;
    return problem;
  }
  if (err instanceof HttpException) {
    const status = err.getStatus();
    const code = CODE_OF_STATUS[status] ?? (status >= 500 ? 'internal' : 'http_error');
    return { type: PROBLEM_TYPE_PREFIX + code, title: STATUS_CODES[status] ?? 'Error', status, detail: err.message, code };
  }
  return { type: PROBLEM_TYPE_PREFIX + 'internal', title: 'Internal Server Error', status: 500, detail: 'internal error', code: 'internal' };
}

export function sendProblem(res: ServerResponse, problem: Problem): void {
  const body = JSON.stringify(problem);
  res.statusCode = problem.status;
  res.setHeader('Content-Type', 'application/problem+json');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.setHeader('Cache-Control', 'no-store');
  if (problem.status === 401) res.setHeader('WWW-Authenticate', 'Bearer realm="jobline"');
  // The bus or the store is down or slow: worth trying again shortly, not hammering.
  if (problem.status === 503) res.setHeader('Retry-After', String(typeof problem.retryAfterSeconds === 'number' ? problem.retryAfterSeconds : 2));
  // Over a quota: worth trying again once some of the owner's jobs have started.
  if (problem.status === 429 && typeof problem.retryAfterSeconds === 'number') res.setHeader('Retry-After', String(problem.retryAfterSeconds));
  res.end(body);
}

@Catch()
export class ProblemFilter implements ExceptionFilter {
  constructor(private readonly logger?: Pick<LoggerService, 'error'>) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<ServerResponse>();
    const problem = toProblem(exception);
    if (problem.status >= 500 && !(exception instanceof JoblineError)) {
      this.logger?.error(`api: unexpected error: ${exception instanceof Error ? (exception.stack ?? exception.message) : String(exception)}`);
    }
    if (res.headersSent) {
      // A streamed body (logs) already started: the only honest signal left is a cut connection.
      res.destroy(exception instanceof Error ? exception : undefined);
      return;
    }
    sendProblem(res, problem);
  }
}
