import { hashToken } from './api-tokens';
import { apiConfigFromEnv } from './main';

describe('apiConfigFromEnv', () => {
  const tokens = JSON.stringify([{ sha256: hashToken('t'), owner: 'alice', admin: true }]);
  const files = (content: string) => (path: string) => {
    if (path !== '/etc/jobline/tokens.json') throw new Error(`ENOENT: ${path}`);
    return content;
  };

  it('applies the defaults and reads the tokens file', () => {
    const c = apiConfigFromEnv({ JOBLINE_TOKENS_FILE: '/etc/jobline/tokens.json' }, files(tokens));
    expect(c).toMatchObject({ natsServers: ['nats://127.0.0.1:4222'], host: '127.0.0.1', port: 8080, submitTimeoutMs: 10_000 });
    expect(c.dataDir).toMatch(/\/\.jobline$/);
    expect(c.eventStore).toBe('sqlite');
    expect(c.tokens).toEqual([{ sha256: hashToken('t'), owner: 'alice', admin: true }]);
  });

  it('takes every setting from the environment', () => {
    const c = apiConfigFromEnv(
      { JOBLINE_TOKENS_FILE: '/etc/jobline/tokens.json', JOBLINE_NATS_URL: 'nats://a:1, nats://b:2', JOBLINE_DATA_DIR: '/var/lib/jobline', JOBLINE_API_PORT: '0', JOBLINE_API_HOST: '::1', JOBLINE_SUBMIT_TIMEOUT_MS: '2500', JOBLINE_EVENT_STORE: 'esdb://es:2113?tls=false', JOBLINE_NATS_USER: 'jobline', JOBLINE_NATS_PASSWORD: 'pw' },
      files(tokens),
    );
    expect(c).toMatchObject({ natsServers: ['nats://a:1', 'nats://b:2'], dataDir: '/var/lib/jobline', port: 0, host: '::1', submitTimeoutMs: 2500, eventStore: 'esdb://es:2113?tls=false', natsUser: 'jobline', natsPassword: 'pw' });
  });

  it('lists what is wrong', () => {
    expect(() => apiConfigFromEnv({}, files(tokens))).toThrow(/JOBLINE_TOKENS_FILE is required/);
    expect(() => apiConfigFromEnv({ JOBLINE_TOKENS_FILE: '/etc/jobline/tokens.json', JOBLINE_API_PORT: '80000' }, files(tokens))).toThrow(/JOBLINE_API_PORT/);
    expect(() => apiConfigFromEnv({ JOBLINE_TOKENS_FILE: '/nope' }, files(tokens))).toThrow(/JOBLINE_TOKENS_FILE \/nope: ENOENT/);
    expect(() => apiConfigFromEnv({ JOBLINE_TOKENS_FILE: '/etc/jobline/tokens.json' }, files('[{"owner": "x"}]'))).toThrow(/0\.sha256/);
    expect(() => apiConfigFromEnv({ JOBLINE_TOKENS_FILE: '/etc/jobline/tokens.json' }, files('not json'))).toThrow(/JOBLINE_TOKENS_FILE/);
  });
});
