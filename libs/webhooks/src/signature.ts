import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The webhook signature (header Jobline-Signature): `t=<unix seconds>,v1=<hex>` where
 * hex = HMAC-SHA256(secret, `${t}.${body}`) over the exact bytes of the body. The timestamp is
 * signed with the body, so a receiver that refuses old timestamps refuses replays.
 */
export function signWebhook(secret: string, body: string, timestampSeconds: number): string {
  const t = Math.floor(timestampSeconds);
  return `t=${t},v1=${hmacHex(secret, t, body)}`;
}

function hmacHex(secret: string, t: number, body: string): string {
  return createHmac('sha256', secret).update(`${t}.`, 'utf8').update(body, 'utf8').digest('hex');
}

export type WebhookVerification = { ok: true; timestamp: number } | { ok: false; reason: string };

/**
 * What a receiver does (README "Webhooks"): parse the header, recompute the HMAC over
 * `<t>.<raw body>`, compare in constant time with every v1= value, and refuse a timestamp
 * more than `toleranceSeconds` (default 300) away from now.
 */
export function verifyWebhook(secret: string, header: string | undefined, body: string, opts: { nowSeconds?: number; toleranceSeconds?: number } = {}): WebhookVerification {
  if (!header) return { ok: false, reason: 'no Jobline-Signature header' };
  let t: number | null = null;
  const v1: string[] = [];
  for (const part of header.split(',')) {
    const [k, v] = part.trim().split('=', 2);
    if (k === 't' && /^\d{1,12}$/.test(v ?? '')) t = Number(v);
    else if (k === 'v1' && /^[0-9a-f]{64}$/.test(v ?? '')) v1.push(v);
  }
  if (t === null) return { ok: false, reason: 'no t= timestamp in the signature' };
  if (v1.length === 0) return { ok: false, reason: 'no v1= signature' };
  const now = opts.nowSeconds ?? Date.now() / 1000;
  const tolerance = opts.toleranceSeconds ?? 300;
  if (Math.abs(now - t) > tolerance) return { ok: false, reason: `timestamp ${t} is more than ${tolerance} s from now` };
  const expected = Buffer.from(hmacHex(secret, t, body), 'hex');
  const match = v1.some((s) => timingSafeEqual(Buffer.from(s, 'hex'), expected));
  return match ? { ok: true, timestamp: t } : { ok: false, reason: 'signature does not match' };
}
