import { createHmac } from 'node:crypto';
import { signWebhook, verifyWebhook } from './signature';

const secret = 'whsec-0123456789abcdef0123456789abcdef';
const body = '{"type":"job.finished","jobId":"x"}';

describe('webhook signature', () => {
  it('is t=<seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">, as the README documents', () => {
    const header = signWebhook(secret, body, 1_700_000_000.9);
    const expected = createHmac('sha256', secret).update(`1700000000.${body}`).digest('hex');
    expect(header).toBe(`t=1700000000,v1=${expected}`);
  });

  it('verifies the right secret and body within the tolerance', () => {
    const header = signWebhook(secret, body, 1_700_000_000);
    expect(verifyWebhook(secret, header, body, { nowSeconds: 1_700_000_100 })).toEqual({ ok: true, timestamp: 1_700_000_000 });
  });

  it('refuses another secret, a changed body, a changed timestamp and an old (replayed) delivery', () => {
    const header = signWebhook(secret, body, 1_700_000_000);
    const now = { nowSeconds: 1_700_000_000 };
    expect(verifyWebhook('another-secret-another-secret-another', header, body, now)).toEqual({ ok: false, reason: 'signature does not match' });
    expect(verifyWebhook(secret, header, body.replace('x', 'y'), now)).toEqual({ ok: false, reason: 'signature does not match' });
    expect(verifyWebhook(secret, header.replace('t=1700000000', 't=1700000001'), body, now)).toEqual({ ok: false, reason: 'signature does not match' });
    expect(verifyWebhook(secret, header, body, { nowSeconds: 1_700_000_301 })).toMatchObject({ ok: false, reason: expect.stringMatching(/more than 300 s from now/) });
    expect(verifyWebhook(secret, header, body, { nowSeconds: 1_699_999_000, toleranceSeconds: 60 })).toMatchObject({ ok: false });
  });

  it('refuses a missing or malformed header', () => {
    expect(verifyWebhook(secret, undefined, body)).toEqual({ ok: false, reason: 'no Jobline-Signature header' });
    expect(verifyWebhook(secret, 'v1=abc', body)).toEqual({ ok: false, reason: 'no t= timestamp in the signature' });
    expect(verifyWebhook(secret, 't=1700000000', body, { nowSeconds: 1_700_000_000 })).toEqual({ ok: false, reason: 'no v1= signature' });
    expect(verifyWebhook(secret, 't=1700000000,v1=zz', body, { nowSeconds: 1_700_000_000 })).toEqual({ ok: false, reason: 'no v1= signature' });
  });

  it('accepts any of several v1 values (a receiver rotating its secret)', () => {
    const old = signWebhook('old-secret-old-secret-old-secret-old', body, 1_700_000_000).split(',')[1];
    const header = `${signWebhook(secret, body, 1_700_000_000)},${old}`;
    expect(verifyWebhook(secret, header, body, { nowSeconds: 1_700_000_000 }).ok).toBe(true);
    expect(verifyWebhook('old-secret-old-secret-old-secret-old', header, body, { nowSeconds: 1_700_000_000 }).ok).toBe(true);
  });
});
