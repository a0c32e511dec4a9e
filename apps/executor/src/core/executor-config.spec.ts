import { VARIABLES } from '../../../../libs/config/src';
import { EXECUTOR_CONFIG_DEFAULTS, EXECUTOR_ENV_VARS, executorConfigFromEnv, natsHostPorts } from './executor-config';

describe('executorConfigFromEnv', () => {
  it('gives the documented defaults for an empty environment, empty strings counting as unset', () => {
    expect(executorConfigFromEnv({})).toEqual({ ...EXECUTOR_CONFIG_DEFAULTS, natsUser: undefined, natsPassword: undefined });
    expect(executorConfigFromEnv({ JOBLINE_DATA_DIR: '/srv/jobline' }).workRoot).toBe('/srv/jobline/work');
    expect(executorConfigFromEnv({ JOBLINE_EXECUTOR_ID: '', JOBLINE_GRACE_MS: '' })).toMatchObject({ executorId: 'local', graceMs: 5000 });
  });

  it('reads and converts every variable', () => {
    const config = executorConfigFromEnv({
      JOBLINE_NATS_URL: 'nats://a:4222,nats://b:4223',
      JOBLINE_NATS_USER: 'u',
      JOBLINE_NATS_PASSWORD: 'p',
      JOBLINE_EXECUTOR_ID: 'edge-1',
      JOBLINE_EXECUTOR_CAPACITY: '8',
      JOBLINE_WORK_ROOT: '/var/lib/jobline',
      JOBLINE_GRACE_MS: '0',
      JOBLINE_HEARTBEAT_MS: '500',
      JOBLINE_LEASE_MS: '4000',
    });
    expect(config).toEqual({
      natsUrl: 'nats://a:4222,nats://b:4223',
      natsUser: 'u',
      natsPassword: 'p',
      executorId: 'edge-1',
      capacity: 8,
      workRoot: '/var/lib/jobline',
      graceMs: 0,
      heartbeatMs: 500,
      leaseMs: 4000,
      sandbox: 'auto',
    });
  });

  it('refuses a lease shorter than three heartbeats, and heartbeats faster than 50 ms', () => {
    expect(() => executorConfigFromEnv({ JOBLINE_HEARTBEAT_MS: '2000', JOBLINE_LEASE_MS: '5000' })).toThrow(/JOBLINE_HEARTBEAT_MS: 2000 is more than a third of JOBLINE_LEASE_MS \(5000\)/);
    expect(() => executorConfigFromEnv({ JOBLINE_HEARTBEAT_MS: '1' })).toThrow(/JOBLINE_HEARTBEAT_MS/);
  });

  it('reads only the executor\'s variables, each one declared in the one configuration', () => {
    expect(() => executorConfigFromEnv({ JOBLINE_API_PORT: 'not a port' } as Record<string, string>)).not.toThrow();
    for (const name of EXECUTOR_ENV_VARS) expect(VARIABLES[name].services).toContain('executor');
  });

  it('lists every problem in one error', () => {
    expect(() => executorConfigFromEnv({ JOBLINE_EXECUTOR_ID: 'no.dots', JOBLINE_EXECUTOR_CAPACITY: 'many', JOBLINE_GRACE_MS: '-1' })).toThrow(
      /JOBLINE_EXECUTOR_ID[\s\S]*JOBLINE_EXECUTOR_CAPACITY[\s\S]*JOBLINE_GRACE_MS/,
    );
  });
});

describe('natsHostPorts', () => {
  it('gives host:port of each server, with the default port and without a scheme', () => {
    expect(natsHostPorts('nats://127.0.0.1:4333')).toEqual(['127.0.0.1:4333']);
    expect(natsHostPorts('nats://user:secret@nats.internal, tls://[::1]:7422,localhost:5000')).toEqual(['nats.internal:4222', '[::1]:7422', 'localhost:5000']);
  });

  it('refuses what is not a URL', () => {
    expect(() => natsHostPorts('nats://exa mple:4222')).toThrow(/invalid NATS server URL/);
  });
});
