import { ConfigError, loadConfig, parseQuotasFile } from '.';

const problems = (text: string): string[] => {
  try {
    parseQuotasFile(text, 'quotas.json');
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.variable}: ${p.message}`);
    throw err;
  }
  throw new Error('expected a ConfigError');
};

describe('quota configuration', () => {
  it('reads a default, per-owner overrides and the Retry-After hint; every part is optional', () => {
    const f = parseQuotasFile(JSON.stringify({ default: { maxRunning: 4, maxQueued: 100, weight: 1 }, owners: { ci: { weight: 2 }, batch: { maxQueued: 0, weight: 0.5 } }, retryAfterSeconds: 5 }), 'quotas.json');
    expect(f).toEqual({ default: { maxRunning: 4, maxQueued: 100, weight: 1 }, owners: { ci: { weight: 2 }, batch: { maxQueued: 0, weight: 0.5 } }, retryAfterSeconds: 5 });
    expect(parseQuotasFile('{}', 'quotas.json')).toEqual({});
  });

  it('refuses non-JSON, unknown keys, bad owners and out-of-range limits, naming the variable, the file and the path', () => {
    expect(problems('{')).toEqual([expect.stringMatching(/^JOBLINE_QUOTAS_FILE: quotas.json is not JSON/)]);
    expect(problems(JSON.stringify({ default: { maxRunning: 0 } }))).toEqual(['JOBLINE_QUOTAS_FILE: quotas.json: default.maxRunning: must be at least 1 (leave it out for no limit)']);
    expect(problems(JSON.stringify({ owners: { ci: { maxQueued: 1.5 } } }))).toEqual(['JOBLINE_QUOTAS_FILE: quotas.json: owners.ci.maxQueued: must be an integer']);
    expect(problems(JSON.stringify({ owners: { ci: { weight: 0 } } }))).toEqual(['JOBLINE_QUOTAS_FILE: quotas.json: owners.ci.weight: must be at least 0.01']);
    expect(problems(JSON.stringify({ owners: { ci: { maxQueued: '5' } } })).join()).toMatch(/owners.ci.maxQueued: .*expected number/i);
    expect(problems(JSON.stringify({ owners: { 'a.b': {} } })).join()).toMatch(/owners.a.b: Invalid key in record/);
    expect(problems(JSON.stringify({ owners: { ci: { maxrunning: 2 } } })).join()).toMatch(/owners.ci: Unrecognized key.*maxrunning/);
    expect(problems(JSON.stringify({ defaults: {} })).join()).toMatch(/\(root\): Unrecognized key.*defaults/);
    expect(problems(JSON.stringify([])).join()).toMatch(/\(root\)/);
  });

  it('takes the file from JOBLINE_QUOTAS_FILE; none by default', () => {
    expect(loadConfig({}).quotas).toEqual({ file: null });
    expect(loadConfig({ JOBLINE_QUOTAS_FILE: '/etc/jobline/quotas.json' }).quotas).toEqual({ file: '/etc/jobline/quotas.json' });
  });
});
