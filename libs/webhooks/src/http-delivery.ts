import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { addressRefusal, guardedLookup, literalAddress, type AddressPolicy } from '../../net/src';

/** How the deliverer may reach a URL. */
export interface DeliveryPolicy extends AddressPolicy {
  /** http:// URLs are allowed (default: https only). */
  allowHttp?: boolean;
  /** Time for one request, connect to response headers (default 10 s). */
  timeoutMs?: number;
}

/** The result of one POST. `refused`: never sent (policy); `retryable`: worth trying again later. */
export type PostResult =
  | { kind: 'response'; statusCode: number; retryable: boolean; durationMs: number }
  | { kind: 'network'; error: string; retryable: true; durationMs: number }
  | { kind: 'refused'; error: string; retryable: false; durationMs: number };

class RefusedAddressError extends Error {}

/** Why the policy refuses a URL before anything is resolved (scheme, credentials, an IP literal), or null. */
export function urlRefusal(url: string, policy: DeliveryPolicy): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `${JSON.stringify(url)} is not a URL`;
  }
  if (u.protocol === 'http:' && !policy.allowHttp) return 'http:// webhooks are not allowed here (https only; JOBLINE_WEBHOOKS_ALLOW_HTTP)';
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return `scheme ${u.protocol} is not allowed`;
  if (u.username || u.password) return 'webhook URLs must not carry credentials';
  const literal = literalAddress(u);
  if (literal) {
    const p = addressRefusal(literal, policy);
    if (p) return `${p} (JOBLINE_WEBHOOKS_ALLOW_ADDRESSES)`;
  }
  return null;
}

/** Status codes worth another try: the receiver is busy or broken for now. */
export const isRetryableStatus = (s: number): boolean => s === 408 || s === 429 || s >= 500;

/**
 * POSTs a body once, guarded: the URL is checked first, every resolved address is checked
 * before connecting (no DNS rebinding), redirects are not followed (a 3xx is a failure),
 * the response body is read and dropped (at most 64 KiB), and the whole request has a deadline.
 */
export function postWebhook(url: string, body: string, headers: Record<string, string>, policy: DeliveryPolicy): Promise<PostResult> {
  const started = Date.now();
  const took = () => Date.now() - started;
  const refusal = urlRefusal(url, policy);
  if (refusal) return Promise.resolve({ kind: 'refused', error: refusal, retryable: false, durationMs: 0 });
  const u = new URL(url);
  const timeoutMs = policy.timeoutMs ?? 10_000;
  const request = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<PostResult>((resolve) => {
    let settled = false;
    const finish = (r: PostResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      req.destroy();
      resolve(r);
    };
    const deadline = setTimeout(() => finish({ kind: 'network', error: `no response within ${timeoutMs} ms`, retryable: true, durationMs: took() }), timeoutMs);
    const req = request(
      u,
      {
        method: 'POST',
        lookup: guardedLookup(policy, (m) => new RefusedAddressError(`${m} (JOBLINE_WEBHOOKS_ALLOW_ADDRESSES)`)),
        headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'user-agent': 'jobline-webhooks/1', ...headers },
      },
      (res: IncomingMessage) => {
        const statusCode = res.statusCode ?? 0;
        let seen = 0;
        res.on('data', (c: Buffer) => {
          seen += c.length;
          if (seen > 64 * 1024) finish({ kind: 'response', statusCode, retryable: isRetryableStatus(statusCode), durationMs: took() });
        });
        res.on('end', () => finish({ kind: 'response', statusCode, retryable: isRetryableStatus(statusCode), durationMs: took() }));
        res.on('error', () => finish({ kind: 'response', statusCode, retryable: isRetryableStatus(statusCode), durationMs: took() }));
      },
    );
    req.on('error', (err) => {
      if (err instanceof RefusedAddressError) finish({ kind: 'refused', error: err.message, retryable: false, durationMs: took() });
      else finish({ kind: 'network', error: err.message, retryable: true, durationMs: took() });
    });
    req.end(body);
  });
}
