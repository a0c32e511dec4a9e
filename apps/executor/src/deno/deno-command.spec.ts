import { DENO_ENTRY, DENO_RUN_FLAGS, denoExecutorArgs, denoPermissionFlags } from './deno-command';

describe('the Deno executor command', () => {
  it('grants the NATS servers, the executor variables, the work root and run, nothing more', () => {
    expect(denoPermissionFlags({ natsUrl: 'nats://10.0.0.5:4222,nats://10.0.0.6', workRoot: '/srv/work' })).toEqual([
      '--allow-net=10.0.0.5:4222,10.0.0.6:4222',
      '--allow-env=JOBLINE_NATS_URL,JOBLINE_NATS_USER,JOBLINE_NATS_PASSWORD,JOBLINE_DATA_DIR,JOBLINE_EXECUTOR_ID,JOBLINE_EXECUTOR_CAPACITY,JOBLINE_WORK_ROOT,JOBLINE_GRACE_MS,JOBLINE_HEARTBEAT_MS,JOBLINE_LEASE_MS,JOBLINE_SANDBOX,JOBLINE_LOG_LEVEL',
      '--allow-read=/srv/work',
      '--allow-write=/srv/work',
      '--allow-run',
      '--allow-sys=uid',
    ]);
  });

  it('runs the entry offline from node_modules, without a config file or lockfile', () => {
    const args = denoExecutorArgs({ natsUrl: 'nats://127.0.0.1:4222', workRoot: 'work' });
    expect(args[0]).toBe('run');
    expect(args.slice(1, 1 + DENO_RUN_FLAGS.length)).toEqual([...DENO_RUN_FLAGS]);
    expect(args).toEqual(expect.arrayContaining(['--no-remote', '--node-modules-dir=manual', '--sloppy-imports', '--no-lock']));
    expect(args.at(-1)).toBe(DENO_ENTRY);
    expect(args.some((a) => a === '-A' || a === '--allow-all')).toBe(false);
  });

  it('refuses a work root Deno could not grant', () => {
    expect(() => denoPermissionFlags({ natsUrl: 'nats://127.0.0.1', workRoot: '/srv/a,b' })).toThrow(/comma/);
  });
});
