import { parseJobSpec, webhookDeliveries, type WebhookAttempt } from '.';

describe('notify in a job spec', () => {
  const issues = (notify: unknown) => {
    const r = parseJobSpec({ command: 'true', notify });
    return r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`);
  };

  it('accepts up to five distinct http(s) URLs', () => {
    expect(issues([{ url: 'https://hooks.example.com/jobline' }, { url: 'http://10.0.0.1:8080/h?x=1' }])).toEqual([]);
  });

  it('refuses other schemes, credentials, fragments, duplicates, extra keys, more than five and an empty list', () => {
    expect(issues([{ url: 'ftp://x/' }])).toEqual([expect.stringMatching(/^notify.0.url: scheme ftp: is not allowed/)]);
    expect(issues([{ url: 'not a url' }])).toEqual([expect.stringMatching(/notify.0.url: must be an absolute URL/)]);
    expect(issues([{ url: 'https://u:p@x.example/' }])).toEqual([expect.stringMatching(/must not carry credentials/)]);
    expect(issues([{ url: 'https://x.example/#f' }])).toEqual([expect.stringMatching(/#fragment/)]);
    expect(issues([{ url: 'https://x.example/' }, { url: 'https://x.example/' }])).toEqual(['notify: the same URL is listed twice']);
    expect(issues([{ url: 'https://x.example/', secret: 'x' }]).join()).toMatch(/Unrecognized key/);
    expect(issues(Array.from({ length: 6 }, (_, i) => ({ url: `https://x.example/${i}` }))).join()).toMatch(/notify/);
    expect(issues([])).toEqual([expect.stringMatching(/^notify:/)]);
    expect(issues([{ url: `https://x.example/${'a'.repeat(2100)}` }]).join()).toMatch(/notify.0.url/);
  });
});

describe('webhookDeliveries', () => {
  const a = (deliveryId: string, attempt: number, outcome: WebhookAttempt['outcome']): WebhookAttempt => ({
    deliveryId, jobId: '00000000-0000-4000-8000-000000000000', url: `https://x/${deliveryId}`, source: 'job', attempt, maxAttempts: 3, outcome,
    statusCode: null, error: null, at: '2026-01-01T00:00:00.000Z', durationMs: 1, nextAttemptAt: null,
  });

  it('groups attempts per delivery, the latest attempt giving the state, a repeated record counted once', () => {
    const ds = webhookDeliveries([a('d1', 1, 'retrying'), a('d2', 1, 'refused'), a('d1', 2, 'delivered'), a('d1', 2, 'delivered')]);
    expect(ds.map((d) => [d.deliveryId, d.state, d.attempts.map((x) => x.attempt)])).toEqual([
      ['d1', 'delivered', [1, 2]],
      ['d2', 'refused', [1]],
    ]);
  });
});
