import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, configurationTable, effectiveVariables, formatEffectiveConfig, loadConfig, withConfigurationTable, VARIABLE_NAMES } from '.';

const problemsOf = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.variable}: ${p.message}`);
    throw err;
  }
  throw new Error('expected a ConfigError');
};

describe('loadConfig', () => {
  it('gives the documented defaults for an empty environment', () => {
    const c = loadConfig({});
    expect(c.nats.servers).toBeNull();
    expect(c.dataDir).toBe('.jobline');
    expect(c.eventStore).toBe('sqlite');
    expect(c.api).toMatchObject({ host: '127.0.0.1', port: 8080, grpcPort: 50051, tlsDir: '.jobline/certs', tlsDirExplicit: false, https: false, tokensFile: null, submitTimeoutMs: 10_000 });
    expect(c.executor).toMatchObject({ id: 'local', capacity: 4, workRoot: '.jobline/work', graceMs: 5000, heartbeatMs: 1000, sandbox: 'auto', sandboxUid: 10001, httpPort: 8083 });
    expect(c.orchestrator).toMatchObject({ packager: true, httpPort: 8081 });
    expect(c.packager).toMatchObject({ workDir: '.jobline/packager', allowFileUrls: false, gitHosts: null, httpPort: 8082 });
    expect(c.leaseMs).toBe(10_000);
  });

  it('turns the side HTTP ports off in the dev profile unless set', () => {
    expect(loadConfig({}, 'dev').orchestrator.httpPort).toBeNull();
    expect(loadConfig({ JOBLINE_EXECUTOR_HTTP_PORT: '9000' }, 'dev').executor.httpPort).toBe(9000);
    expect(loadConfig({ JOBLINE_PACKAGER_HTTP_PORT: 'off' }).packager.httpPort).toBeNull();
  });

  it('derives folders from JOBLINE_DATA_DIR and parses lists, flags and labels', () => {
    const c = loadConfig({
      JOBLINE_DATA_DIR: '/var/lib/jobline',
      JOBLINE_NATS_URL: 'nats://a:4222, nats://b:4222',
      JOBLINE_PACKAGER_GIT_HOSTS: 'github.com,*.example.com',
      JOBLINE_PACKAGER_ALLOW_FILE_URLS: 'true',
      JOBLINE_EXECUTOR_LABELS: 'gpu=yes,zone=eu-1',
      JOBLINE_GRPC_PORT: 'off',
      JOBLINE_EVENT_STORE: 'postgres://jobline:pw@db:5432/jobline',
    });
    expect(c.executor.workRoot).toBe('/var/lib/jobline/work');
    expect(c.api.tlsDir).toBe('/var/lib/jobline/certs');
    expect(c.nats.servers).toEqual(['nats://a:4222', 'nats://b:4222']);
    expect(c.packager.gitHosts).toEqual(['github.com', '*.example.com']);
    expect(c.packager.allowFileUrls).toBe(true);
    expect(c.executor.labels).toEqual({ gpu: 'yes', zone: 'eu-1' });
    expect(c.api.grpcPort).toBeNull();
    expect(c.eventStore).toBe('postgres://jobline:pw@db:5432/jobline');
  });

  it('refuses bad values, naming the variable and what it accepts, all at once', () => {
    const problems = problemsOf({ JOBLINE_EXECUTOR_CAPACITY: 'four', JOBLINE_SANDBOX: 'maybe', JOBLINE_PACKAGER_ALLOW_FILE_URLS: 'yes', JOBLINE_API_PORT: '70000' });
    expect(problems).toHaveLength(4);
    expect(problems.find((p) => p.startsWith('JOBLINE_EXECUTOR_CAPACITY'))).toMatch(/"four".*integer 0\.\.1024/);
    expect(problems.find((p) => p.startsWith('JOBLINE_SANDBOX'))).toMatch(/auto \| required \| none/);
    expect(problems.find((p) => p.startsWith('JOBLINE_PACKAGER_ALLOW_FILE_URLS'))).toMatch(/true or false/);
    expect(problems.find((p) => p.startsWith('JOBLINE_API_PORT'))).toMatch(/at most 65535/);
  });

  it('never coerces: a number with units, a float or a negative capacity is an error', () => {
    expect(problemsOf({ JOBLINE_GRACE_MS: '5s' })[0]).toMatch(/^JOBLINE_GRACE_MS/);
    expect(problemsOf({ JOBLINE_EXECUTOR_CAPACITY: '1.5' })[0]).toMatch(/^JOBLINE_EXECUTOR_CAPACITY/);
    expect(problemsOf({ JOBLINE_EXECUTOR_CAPACITY: '-1' })[0]).toMatch(/at least 0/);
    expect(problemsOf({ JOBLINE_EXECUTOR_LABELS: 'gpu' })[0]).toMatch(/not key=value/);
  });

  it('retention and the git cache budget are off by default; set, they are validated and parsed', () => {
    expect(loadConfig({}).orchestrator.retention).toEqual({ maxAgeMs: null, ownerMaxAgeMs: {}, intervalMs: 3_600_000 });
    expect(loadConfig({}).packager.gitCacheMaxBytes).toBeNull();
    expect(loadConfig({}).executor.bundleCacheMaxBytes).toBeNull();
    expect(loadConfig({ JOBLINE_BUNDLE_CACHE_MAX_BYTES: '5368709120' }).executor.bundleCacheMaxBytes).toBe(5 * 1024 ** 3);
    expect(loadConfig({ JOBLINE_BUNDLE_CACHE_MAX_BYTES: 'off' }).executor.bundleCacheMaxBytes).toBeNull();
    expect(problemsOf({ JOBLINE_BUNDLE_CACHE_MAX_BYTES: '0' })[0]).toMatch(/^JOBLINE_BUNDLE_CACHE_MAX_BYTES/);
    const c = loadConfig({
      JOBLINE_RETENTION_MAX_AGE_MS: '604800000',
      JOBLINE_RETENTION_OWNER_MAX_AGE_MS: 'acme=86400000, audit=off',
      JOBLINE_RETENTION_INTERVAL_MS: '60000',
      JOBLINE_PACKAGER_GIT_CACHE_MAX_BYTES: '1073741824',
    });
    expect(c.orchestrator.retention).toEqual({ maxAgeMs: 604_800_000, ownerMaxAgeMs: { acme: 86_400_000, audit: null }, intervalMs: 60_000 });
    expect(c.packager.gitCacheMaxBytes).toBe(1024 ** 3);
    expect(loadConfig({ JOBLINE_RETENTION_MAX_AGE_MS: 'off' }).orchestrator.retention.maxAgeMs).toBeNull();
    expect(problemsOf({ JOBLINE_RETENTION_MAX_AGE_MS: '7d' })[0]).toMatch(/^JOBLINE_RETENTION_MAX_AGE_MS: "7d".*milliseconds/);
    expect(problemsOf({ JOBLINE_RETENTION_MAX_AGE_MS: '1000' })[0]).toMatch(/at least 60000/);
    expect(problemsOf({ JOBLINE_RETENTION_OWNER_MAX_AGE_MS: 'acme' })[0]).toMatch(/"acme" is not owner=milliseconds/);
    expect(problemsOf({ JOBLINE_RETENTION_OWNER_MAX_AGE_MS: 'acme=1d' })[0]).toMatch(/acme: .*milliseconds/);
    expect(problemsOf({ JOBLINE_RETENTION_OWNER_MAX_AGE_MS: 'acme=off,acme=60000' })[0]).toMatch(/acme is given twice/);
    expect(problemsOf({ JOBLINE_RETENTION_INTERVAL_MS: '10' })[0]).toMatch(/at least 1000/);
    expect(problemsOf({ JOBLINE_PACKAGER_GIT_CACHE_MAX_BYTES: '1GiB' })[0]).toMatch(/^JOBLINE_PACKAGER_GIT_CACHE_MAX_BYTES/);
  });

  it('refuses an unknown JOBLINE_ variable, suggesting the nearest one, and ignores JOBLINE_TEST_*', () => {
    expect(problemsOf({ JOBLINE_SANBOX: 'none' })).toEqual([expect.stringMatching(/^JOBLINE_SANBOX: unknown variable \(did you mean JOBLINE_SANDBOX\?\)/)]);
    expect(() => loadConfig({ JOBLINE_TEST_ESDB_URL: 'esdb://x', PATH: '/bin' })).not.toThrow();
  });

  it('never repeats a secret in an error, and masks a password inside a URL', () => {
    const problems = problemsOf({ JOBLINE_EVENT_STORE: 'mysql://u:hunter2@db/x' });
    expect(problems[0]).toContain('mysql://u:***@db/x');
    expect(problems.join('\n')).not.toContain('hunter2');
  });

  it('refuses a heartbeat period too long for the lease', () => {
    expect(problemsOf({ JOBLINE_HEARTBEAT_MS: '5000', JOBLINE_LEASE_MS: '10000' })[0]).toMatch(/^JOBLINE_HEARTBEAT_MS: 5000 is more than a third of JOBLINE_LEASE_MS/);
  });
});

describe('the effective configuration', () => {
  it('shows every variable, set ones as set, secrets masked', () => {
    const env = { JOBLINE_NATS_PASSWORD: 's3cret', JOBLINE_NATS_USER: 'svc', JOBLINE_EVENT_STORE: 'postgres://u:pw@db/j' };
    const rows = effectiveVariables(loadConfig(env), env);
    expect(rows.map((r) => r.name)).toEqual(VARIABLE_NAMES);
    expect(rows.find((r) => r.name === 'JOBLINE_NATS_PASSWORD')).toMatchObject({ value: '***', source: 'set' });
    expect(rows.find((r) => r.name === 'JOBLINE_EVENT_STORE')).toMatchObject({ value: 'postgres://u:***@db/j' });
    expect(rows.find((r) => r.name === 'JOBLINE_API_PORT')).toMatchObject({ value: '8080', source: 'default' });
    const text = formatEffectiveConfig(rows);
    expect(text).not.toContain('s3cret');
    expect(text).not.toContain(':pw@');
  });
});

describe("the README's configuration table", () => {
  it('is generated from the variable table (regenerate with `npm run docs:config`)', () => {
    const readme = readFileSync(join(__dirname, '../../../README.md'), 'utf8');
    expect(withConfigurationTable(readme) === readme).toBe(true);
    for (const name of VARIABLE_NAMES) expect(configurationTable()).toContain(`\`${name}\``);
  });
});
