import { cpuQuota, executorCgroupName } from './cgroup-driver';
import { cgroupDir, cgroupMounts, keyValues, ownCgroups } from './host';
import { decodeExit } from './sandbox-runner';

describe('sandbox host parsing', () => {
  const mountinfo = [
    '30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct',
    '31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory',
    '32 25 0:28 /outer /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids',
    '33 25 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate',
    '34 25 0:30 / /tmp rw - tmpfs tmpfs rw',
  ].join('\n');

  it('finds v1 hierarchies with their controllers and the v2 mount', () => {
    expect(cgroupMounts(mountinfo)).toEqual([
      { fstype: 'cgroup', root: '/', mountpoint: '/sys/fs/cgroup/cpu,cpuacct', controllers: ['cpu', 'cpuacct'] },
      { fstype: 'cgroup', root: '/', mountpoint: '/sys/fs/cgroup/memory', controllers: ['memory'] },
      { fstype: 'cgroup', root: '/outer', mountpoint: '/sys/fs/cgroup/pids', controllers: ['pids'] },
      { fstype: 'cgroup2', root: '/', mountpoint: '/sys/fs/cgroup/unified', controllers: [] },
    ]);
  });

  it('reads our own cgroups per controller, v2 under the empty key', () => {
    const own = ownCgroups('4:memory:/process_api/x\n2:cpu,cpuacct:/\n0::/user.slice\n');
    expect(own.get('memory')).toBe('/process_api/x');
    expect(own.get('cpuacct')).toBe('/');
    expect(own.get('')).toBe('/user.slice');
  });

  it('places a cgroup path on a mount whose root is not /, and refuses one outside it', () => {
    const pids = cgroupMounts(mountinfo)[2];
    expect(cgroupDir(pids, '/outer/a/b')).toBe('/sys/fs/cgroup/pids/a/b');
    expect(cgroupDir(pids, '/elsewhere')).toBeNull();
  });

  it('parses key-value cgroup files', () => {
    expect(keyValues('oom_kill_disable 0\nunder_oom 0\noom_kill 2\n')).toEqual({ oom_kill_disable: 0, under_oom: 0, oom_kill: 2 });
  });
});

describe('sandbox limits and exit decoding', () => {
  it('turns a fraction of cores into a quota over a 100 ms period, never below 1 ms', () => {
    expect(cpuQuota(0.2)).toEqual({ quotaUs: 20_000, periodUs: 100_000 });
    expect(cpuQuota(2)).toEqual({ quotaUs: 200_000, periodUs: 100_000 });
    expect(cpuQuota(0.001)).toEqual({ quotaUs: 1000, periodUs: 100_000 });
  });

  it('reads 128 + n from the init as signal n, and passes a real signal through', () => {
    expect(decodeExit(0, null)).toEqual({ exitCode: 0, signal: null });
    expect(decodeExit(3, null)).toEqual({ exitCode: 3, signal: null });
    expect(decodeExit(137, null)).toEqual({ exitCode: 137, signal: 'SIGKILL' });
    expect(decodeExit(134, null)).toEqual({ exitCode: 134, signal: 'SIGABRT' });
    expect(decodeExit(null, 'SIGKILL')).toEqual({ exitCode: 137, signal: 'SIGKILL' });
    expect(decodeExit(255, null)).toEqual({ exitCode: 255, signal: null });
  });
});

describe('the executor parent cgroup', () => {
  it('is named by the executor id and its work root, so two data folders never share one', () => {
    const a = executorCgroupName('local', '/srv/one/.jobline/work/local');
    expect(a).toMatch(/^jobline\/local\.[0-9a-f]{12}$/);
    expect(executorCgroupName('local', '/srv/one/.jobline/work/local/')).toBe(a);
    expect(executorCgroupName('local', '/srv/two/.jobline/work/local')).not.toBe(a);
    expect(executorCgroupName('other', '/srv/one/.jobline/work/local')).not.toBe(a);
  });
});
