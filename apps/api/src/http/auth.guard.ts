import { createParamDecorator, Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { JoblineError } from '../../../../libs/contracts/src';
import { TokenRegistry, type Caller } from '../api-tokens';
import { callerFromRequest } from './request-caller';

export const TOKEN_REGISTRY = Symbol('TokenRegistry');

type AuthenticatedRequest = IncomingMessage & { caller?: Caller };

/**
 * A verified client certificate (HTTPS mode) or `Authorization: Bearer <token>`, looked up
 * by its SHA-256 (see callerFromRequest); anything else is a 401.
 */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(@Inject(TOKEN_REGISTRY) private readonly tokens: TokenRegistry) {}

  canActivate(ctx: ExecutionContext): boolean {
    const req = ctx.switchToHttp().getRequest<AuthenticatedRequest>();
    req.caller = callerFromRequest(req, this.tokens);
    return true;
  }
}

/** The authenticated caller (routes behind AuthGuard only). */
export const CurrentCaller = createParamDecorator((_: unknown, ctx: ExecutionContext): Caller => {
  const caller = ctx.switchToHttp().getRequest<AuthenticatedRequest>().caller;
  if (!caller) throw new JoblineError('unauthenticated', 'not authenticated');
  return caller;
});
