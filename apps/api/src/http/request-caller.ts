import type { IncomingMessage } from 'node:http';
import { TLSSocket } from 'node:tls';
import { JoblineError } from '../../../../libs/contracts/src';
import type { Caller, TokenRegistry } from '../api-tokens';
import { callerFromCertificate } from '../grpc/jobs.grpc-server';

const BEARER = /^Bearer[ \t]+([\x21-\x7E]{1,4096})[ \t]*$/i;

/**
 * A browser cannot set headers on a WebSocket, and a token in the URL ends up in logs; it
 * can offer subprotocols. `new WebSocket(url, ['jobline.v1', 'jobline.bearer.' + base64url(token)])`
 * carries the token in Sec-WebSocket-Protocol; the server answers with the first one offered
 * ('jobline.v1', never the token).
 */
export const WS_BEARER_PROTOCOL_PREFIX = 'jobline.bearer.';
const WS_BEARER_PROTOCOL = /^jobline\.bearer\.([A-Za-z0-9_-]{1,5462})$/;

/** The token offered as a `jobline.bearer.<base64url>` subprotocol on a WebSocket upgrade, if any. */
function subprotocolToken(req: IncomingMessage): string | null {
  const offered = req.headers['sec-websocket-protocol'];
  if (typeof offered !== 'string' || req.headers.upgrade?.toLowerCase() !== 'websocket') return null;
  for (const p of offered.split(',')) {
    const m = WS_BEARER_PROTOCOL.exec(p.trim());
    if (m) return Buffer.from(m[1], 'base64url').toString('utf8');
  }
  return null;
}

/**
 * Who is calling, by the same rules on REST and on the WebSocket upgrade:
 *  1. a client certificate that the TLS layer verified against the configured CA (HTTPS
 *     mode): the caller is its CN, OU=admin an admin — exactly as on gRPC;
 *  2. otherwise a bearer token (`Authorization: Bearer <token>`; on a WebSocket upgrade also a
 *     `jobline.bearer.<base64url>` subprotocol or `queryToken`, where a browser cannot set
 *     headers), looked up by its SHA-256.
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
  const offered = subprotocolToken(req) ?? queryToken;
  if (offered !== undefined && offered !== null) {
    const caller = tokens.authenticate(offered);
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
