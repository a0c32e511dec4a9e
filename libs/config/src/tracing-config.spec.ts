import { ConfigError, effectiveVariables, loadConfig } from '.';

const problemsOf = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.variable}: ${p.message}`);
    throw err;
  }
  throw new Error('expected a ConfigError');
};

describe('tracing configuration (standard OTEL_* variables)', () => {
  it('is off by default, with the specification defaults', () => {
    expect(loadConfig({}).tracing).toEqual({
      enabled: false,
      exporter: 'otlp',
      endpoint: 'http://localhost:4318/v1/traces',
      protocol: 'http/protobuf',
      headers: {},
      timeoutMs: 10_000,
      serviceName: null,
      resourceAttributes: {},
      sampler: 'parentbased_always_on',
      samplerRatio: 1,
      batch: { scheduleDelayMs: 5000, exportTimeoutMs: 30_000, maxQueueSize: 2048, maxExportBatchSize: 512 },
    });
  });

  it.each([
    [{ OTEL_TRACES_EXPORTER: 'otlp' }, true],
    [{ OTEL_TRACES_EXPORTER: 'console' }, true],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }, true],
    [{ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://collector/v1/traces' }, true],
    [{ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }, false],
    [{ OTEL_SDK_DISABLED: 'true', OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }, false],
    [{ OTEL_SDK_DISABLED: 'TRUE', OTEL_TRACES_EXPORTER: 'otlp' }, false],
    [{ OTEL_SDK_DISABLED: 'false', OTEL_TRACES_EXPORTER: 'otlp' }, true],
    [{ OTEL_SERVICE_NAME: 'ci-jobline', OTEL_BSP_SCHEDULE_DELAY: '100' }, false],
  ])('%j → enabled %s', (env, enabled) => {
    expect(loadConfig(env).tracing.enabled).toBe(enabled);
  });

  it('builds the traces URL as the specification says: the signal URL as it is, the base one + /v1/traces', () => {
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).tracing.endpoint).toBe('http://collector:4318/v1/traces');
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/otlp' }).tracing.endpoint).toBe('http://c:4318/otlp/v1/traces');
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://t.example/custom' }).tracing.endpoint).toBe('https://t.example/custom');
  });

  it('takes the traces-specific protocol, headers and timeout over the general ones', () => {
    const t = loadConfig({
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_HEADERS: 'api-key=general,x-tenant=acme',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'api-key=for%20traces',
      OTEL_EXPORTER_OTLP_TIMEOUT: '2000',
      OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '3000',
    }).tracing;
    expect(t).toMatchObject({ protocol: 'http/json', headers: { 'api-key': 'for traces', 'x-tenant': 'acme' }, timeoutMs: 3000 });
  });

  it('parses the service name, resource attributes, sampler and batch settings', () => {
    const t = loadConfig({
      OTEL_SERVICE_NAME: 'jobline-eu',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=prod, team=build%2Ctools',
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0.25',
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_BSP_EXPORT_TIMEOUT: '5000',
      OTEL_BSP_MAX_QUEUE_SIZE: '100',
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '50',
    }).tracing;
    expect(t).toMatchObject({
      serviceName: 'jobline-eu',
      resourceAttributes: { 'deployment.environment.name': 'prod', team: 'build,tools' },
      sampler: 'parentbased_traceidratio',
      samplerRatio: 0.25,
      batch: { scheduleDelayMs: 100, exportTimeoutMs: 5000, maxQueueSize: 100, maxExportBatchSize: 50 },
    });
  });

  it('refuses a bad value, naming the variable (and never printing a header value)', () => {
    expect(problemsOf({ OTEL_TRACES_EXPORTER: 'jaeger' })).toEqual(['OTEL_TRACES_EXPORTER: "jaeger" must be otlp, console or none (accepts otlp | console | none)']);
    expect(problemsOf({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' })[0]).toMatch(/^OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" must be an http:\/\/ or https:\/\/ URL/);
    expect(problemsOf({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })[0]).toMatch(/^OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" must be http\/protobuf or http\/json \(grpc is not supported\)/);
    expect(problemsOf({ OTEL_SDK_DISABLED: 'yes' })[0]).toMatch(/^OTEL_SDK_DISABLED: "yes" must be true or false/);
    expect(problemsOf({ OTEL_TRACES_SAMPLER_ARG: '1.5' })[0]).toMatch(/^OTEL_TRACES_SAMPLER_ARG: "1.5" must be a ratio 0..1/);
    expect(problemsOf({ OTEL_BSP_SCHEDULE_DELAY: 'soon' })[0]).toMatch(/^OTEL_BSP_SCHEDULE_DELAY: "soon" must be an integer/);
    expect(problemsOf({ OTEL_BSP_MAX_QUEUE_SIZE: '10', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '20' })).toEqual(['OTEL_BSP_MAX_EXPORT_BATCH_SIZE: 20 is more than OTEL_BSP_MAX_QUEUE_SIZE (10)']);
    const header = problemsOf({ OTEL_EXPORTER_OTLP_HEADERS: 'api-key=s3cret,novalue' });
    expect(header[0]).toMatch(/^OTEL_EXPORTER_OTLP_HEADERS: "\*\*\*" is invalid: an entry is not key=value/);
    expect(header.join()).not.toContain('s3cret');
    expect(problemsOf({ OTEL_RESOURCE_ATTRIBUTES: 'team=%E0%A4%A' })[0]).toMatch(/^OTEL_RESOURCE_ATTRIBUTES: .*not percent-encoded correctly/);
  });

  it('shows in `jobline config`, headers masked', () => {
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_EXPORTER_OTLP_HEADERS: 'api-key=s3cret' };
    const rows = effectiveVariables(loadConfig(env), env);
    expect(rows.find((r) => r.name === 'OTEL_EXPORTER_OTLP_ENDPOINT')).toMatchObject({ value: 'http://collector:4318', source: 'set' });
    expect(rows.find((r) => r.name === 'OTEL_EXPORTER_OTLP_HEADERS')).toMatchObject({ value: '***', source: 'set' });
    expect(rows.find((r) => r.name === 'OTEL_SERVICE_NAME')).toMatchObject({ source: 'default' });
  });
});
