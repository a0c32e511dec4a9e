import { ConfigError, loadConfig, parseWebhooksFile } from '.';

const problems = (text: string): string[] => {
  try {
    parseWebhooksFile(text, 'hooks.json');
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.variable}: ${p.message}`);
    throw err;
  }
  throw new Error('expected a ConfigError');
};

describe('webhook configuration', () => {
  it('reads per-owner secrets and URLs', () => {
    const f = parseWebhooksFile(JSON.stringify({ owners: { acme: { secret: 'x'.repeat(32), urls: ['https://hooks.acme.example/jobline'] }, bob: { secret: 'y'.repeat(40) } } }), 'hooks.json');
    expect(f.owners.acme.urls).toEqual(['https://hooks.acme.example/jobline']);
    expect(f.owners.bob.urls).toBeUndefined();
  });

  it('refuses a short secret, a bad owner, a bad URL, unknown keys and non-JSON, naming the variable and path (never the secret)', () => {
    expect(problems('{')).toEqual([expect.stringMatching(/^JOBLINE_WEBHOOKS_FILE: hooks.json is not JSON/)]);
    const short = problems(JSON.stringify({ owners: { acme: { secret: 'too-short-secret' } } }));
    expect(short).toEqual(['JOBLINE_WEBHOOKS_FILE: hooks.json: owners.acme.secret: must be at least 32 characters (e.g. openssl rand -hex 32)']);
    expect(short.join()).not.toContain('too-short-secret');
    expect(problems(JSON.stringify({ owners: { 'a.b': { secret: 'x'.repeat(32) } } })).join()).toMatch(/owners.a.b: Invalid key in record/);
    expect(problems(JSON.stringify({ owners: { acme: { secret: 'x'.repeat(32), urls: ['ftp://x/'] } } })).join()).toMatch(/owners.acme.urls.0: must be an http\(s\) URL/);
    expect(problems(JSON.stringify({ owners: { acme: { secret: 'x'.repeat(32), urls: ['https://u:p@x/'] } } })).join()).toMatch(/without credentials/);
    expect(problems(JSON.stringify({ owners: {}, extra: 1 })).join()).toMatch(/Unrecognized key/);
  });

  it('has safe defaults and parses the webhook variables', () => {
    const d = loadConfig({});
    expect(d.webhooks).toEqual({ file: null, allowHttp: false, allowedRanges: [], maxAttempts: 8, backoffMs: 2000, timeoutMs: 10_000 });
    expect(d.publicUrl).toBe('http://127.0.0.1:8080');
    const c = loadConfig({
      JOBLINE_WEBHOOKS_FILE: '/etc/jobline/hooks.json',
      JOBLINE_WEBHOOKS_ALLOW_HTTP: 'true',
      JOBLINE_WEBHOOKS_ALLOW_ADDRESSES: '127.0.0.0/8, fd00::/8',
      JOBLINE_WEBHOOKS_MAX_ATTEMPTS: '3',
      JOBLINE_API_PUBLIC_URL: 'https://jobline.example.com/',
      JOBLINE_API_HTTPS: 'true',
    });
    expect(c.webhooks).toMatchObject({ file: '/etc/jobline/hooks.json', allowHttp: true, allowedRanges: ['127.0.0.0/8', 'fd00::/8'], maxAttempts: 3 });
    expect(c.publicUrl).toBe('https://jobline.example.com');
    expect(loadConfig({ JOBLINE_API_HTTPS: 'true', JOBLINE_API_PORT: '8443' }).publicUrl).toBe('https://127.0.0.1:8443');
  });

  it('refuses ranges that are not CIDR and a public URL that is not http(s)', () => {
    expect(() => loadConfig({ JOBLINE_WEBHOOKS_ALLOW_ADDRESSES: '127.0.0.1' })).toThrow(/JOBLINE_WEBHOOKS_ALLOW_ADDRESSES: .*CIDR range/);
    expect(() => loadConfig({ JOBLINE_WEBHOOKS_ALLOW_ADDRESSES: '10.0.0.0/40' })).toThrow(/CIDR range/);
    expect(() => loadConfig({ JOBLINE_API_PUBLIC_URL: 'jobline.example.com' })).toThrow(/JOBLINE_API_PUBLIC_URL/);
    expect(() => loadConfig({ JOBLINE_WEBHOOKS_MAX_ATTEMPTS: '0' })).toThrow(/at least 1/);
  });
});
