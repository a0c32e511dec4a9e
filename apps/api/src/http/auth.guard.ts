import { createParamDecorator, Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { JoblineError } from '../../../../libs/contracts/src';
import { TokenRegistry, type Caller } from '../api-tokens';

export const TOKEN_REGISTRY = Symbol('TokenRegistry');

type AuthenticatedRequest = IncomingMessage & { caller?: Caller };

const BEARER = /^Bearer[ \t]+([\x21-\x7E]{1,4096})[ \t]*$/i;

/** `Authorization: Bearer <token>`, looked up by its SHA-256; anything else is a 401. */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(@Inject(TOKEN_REGISTRY) private readonly tokens: TokenRegistry) {}

  canActivate(ctx: ExecutionContext): boolean {
    const req = ctx.switchToHttp().getRequest<AuthenticatedRequest>();
    const header = req.headers.authorization;
    if (!header) throw new JoblineError('unauthenticated', 'missing Authorization header (expected "Bearer <token>")');
    const m = BEARER.exec(header);
    const caller = m ? this.tokens.authenticate(m[1]) : null;
    if (!caller) throw new JoblineError('unauthenticated', 'invalid or unknown bearer token');
    req.caller = caller;
    return true;
  }
}

/** The authenticated caller (routes behind AuthGuard only). */
export const CurrentCaller = createParamDecorator((_: unknown, ctx: ExecutionContext): Caller => {
  const caller = ctx.switchToHttp().getRequest<AuthenticatedRequest>().caller;
  if (!caller) throw new JoblineError('unauthenticated', 'not authenticated');
  return caller;
});
