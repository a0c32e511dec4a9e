import type { IncomingMessage } from 'node:http';
import { TLSSocket } from 'node:tls';
import { JoblineError } from '../../../../libs/contracts/src';
import type { Caller, TokenRegistry } from '../api-tokens';
import { callerFromCertificate } from '../grpc/jobs.grpc-server';

const BEARER = /^Bearer[ \t]+([\x21-\x7E]{1,4096})[ \t]*$/i;

/**
 * Who is calling, by the same rules on REST and on the WebSocket upgrade:
 *  1. a client certificate that the TLS layer verified against the configured CA (HTTPS
 *     mode): the caller is its CN, OU=admin an admin — exactly as on gRPC;
 *  2. otherwise a bearer token (`Authorization: Bearer <token>`, or `queryToken` where a
 *     browser cannot set headers), looked up by its SHA-256.
 * A certificate that did not verify (another CA, expired) grants nothing: the bearer token
 * decides, and without one the caller is refused. Throws JoblineError('unauthenticated').
 */
export function callerFromRequest(req: IncomingMessage, tokens: TokenRegistry, queryToken?: string | null): Caller {
  const socket = req.socket;
  if (socket instanceof TLSSocket && socket.authorized) {
    const cert = socket.getPeerCertificate();
    // authorized without a certificate cannot happen with requestCert, but an empty object is what a missing one looks like.
    if (cert && Object.keys(cert).length > 0) return callerFromCertificate(cert);
  }
  const header = req.headers.authorization;
  if (header !== undefined) {
    const m = BEARER.exec(header);
    const caller = m ? tokens.authenticate(m[1]) : null;
    if (!caller) throw new JoblineError('unauthenticated', 'invalid or unknown bearer token');
    return caller;
  }
  if (queryToken !== undefined && queryToken !== null) {
    const caller = tokens.authenticate(queryToken);
    if (!caller) throw new JoblineError('unauthenticated', 'invalid or unknown bearer token');
    return caller;
  }
  throw new JoblineError('unauthenticated', unauthenticatedHint(socket));
}

function unauthenticatedHint(socket: IncomingMessage['socket']): string {
  if (!(socket instanceof TLSSocket)) return 'missing Authorization header (expected "Bearer <token>")';
  const presented = Object.keys(socket.getPeerCertificate() ?? {}).length > 0;
  return presented
    ? `the client certificate was not accepted (${String(socket.authorizationError ?? 'not verified')}) and no bearer token was given`
    : 'missing Authorization header (expected "Bearer <token>") or a client certificate of the configured CA';
}
