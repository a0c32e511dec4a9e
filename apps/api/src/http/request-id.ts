import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RequestIdSchema, ValidationError } from '../../../../libs/contracts/src';
import { sendProblem, toProblem } from './problem.filter';

/** The REST header (and the gRPC metadata key, lower-cased) naming a request: the causationId of what it records. */
export const REQUEST_ID_HTTP_HEADER = 'X-Request-Id';

type RequestWithId = IncomingMessage & { requestId?: string };

/**
 * The request's id: the client's X-Request-Id (or gRPC x-request-id) when it gave one, a new
 * UUID otherwise. Throws a ValidationError naming the header for a malformed one (more than
 * one, longer than 128, a character outside [A-Za-z0-9._:-]).
 */
export function requestIdOf(given: string | string[] | undefined, header = REQUEST_ID_HTTP_HEADER): string {
  if (given === undefined) return randomUUID();
  const value = Array.isArray(given) ? (given.length === 1 ? given[0] : null) : given;
  const ok = value === null ? null : RequestIdSchema.safeParse(value);
  if (!ok?.success) {
    throw new ValidationError(`${header} must be one value of 1-128 characters from [A-Za-z0-9._:-]`, [{ path: header, message: 'not a request id' }]);
  }
  return ok.data;
}

/**
 * Gives every request its id (REQUEST_ID_HTTP_HEADER, echoed in the response), before any
 * route runs: a malformed X-Request-Id is a 400 problem, and nothing else happens.
 */
export function requestIdMiddleware(): (req: RequestWithId, res: ServerResponse, next: () => void) => void {
  return (req, res, next) => {
    let id: string;
    try {
      id = requestIdOf(req.headers['x-request-id']);
    } catch (err) {
      sendProblem(res, toProblem(err));
      return;
    }
    req.requestId = id;
    res.setHeader(REQUEST_ID_HTTP_HEADER, id);
    next();
  };
}

/** The id requestIdMiddleware gave the request. */
export const CurrentRequestId = createParamDecorator((_: unknown, ctx: ExecutionContext): string => {
  const req = ctx.switchToHttp().getRequest<RequestWithId>();
  return req.requestId ?? requestIdOf(req.headers['x-request-id']);
});
