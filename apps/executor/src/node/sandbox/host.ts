import { accessSync, constants, existsSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

/** Linux host facts the sandbox needs: cgroup mounts, our own cgroups, block devices, tools. */

export interface CgroupMount {
  /** 'cgroup' (v1) or 'cgroup2'. */
  fstype: string;
  mountpoint: string;
  /** The cgroup path the mount shows as its root (not '/' inside a cgroup namespace). */
  root: string;
  /** v1: the controllers of the hierarchy (e.g. ['cpu', 'cpuacct']); v2: []. */
  controllers: string[];
}

/** Cgroup mounts from /proc/self/mountinfo. */
export function cgroupMounts(mountinfo = readText('/proc/self/mountinfo')): CgroupMount[] {
  const out: CgroupMount[] = [];
  for (const line of (mountinfo ?? '').split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const [fstype, , superOpts = ''] = line.slice(sep + 3).split(' ');
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    const controllers =
      fstype === 'cgroup' ? superOpts.split(',').filter((o) => !o.includes('=') && !NON_CONTROLLER_OPTS.has(o)) : [];
    out.push({ fstype, root: unescapeMount(left[3]), mountpoint: unescapeMount(left[4]), controllers });
  }
  return out;
}

const NON_CONTROLLER_OPTS = new Set(['rw', 'ro', 'noprefix', 'clone_children', 'xattr', 'cpuset_v2_mode', 'nsdelegate', 'memory_localevents', 'memory_recursiveprot']);

/** /proc/self/cgroup as hierarchy → path: v1 lines keyed by each controller, the v2 line by ''. */
export function ownCgroups(text = readText('/proc/self/cgroup')): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of (text ?? '').split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === '0' && m[2] === '') out.set('', m[3]);
    else for (const c of m[2].split(',')) if (c) out.set(c, m[3]);
  }
  return out;
}

/** Where a cgroup path lives on a mount, or null when the mount does not show it. */
export function cgroupDir(mount: CgroupMount, cgroupPath: string): string | null {
  const rel = relative(mount.root, cgroupPath);
  if (rel.startsWith('..')) return null;
  return join(mount.mountpoint, rel);
}

export interface BlockDevice {
  /** "major:minor" of the whole disk (io limits apply to disks, not partitions). */
  id: string;
  name: string;
}

/** The disk that backs a path, or a reason why io limits cannot apply to it (overlay, tmpfs, a partitionless virtual device...). */
export function backingDisk(path: string): BlockDevice | { reason: string } {
  const dev = statSync(path, { bigint: true }).dev;
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  const sys = `/sys/dev/block/${major}:${minor}`;
  if (!existsSync(sys)) return { reason: `the workspace is on ${major}:${minor}, not a block device (overlay, tmpfs or a network file system)` };
  let devDir = resolve(dirname(sys), readlinkSync(sys));
  // A partition's throttle belongs on its disk.
  if (existsSync(join(devDir, 'partition'))) devDir = dirname(devDir);
  const id = readText(join(devDir, 'dev'))?.trim();
  if (!id || !/^\d+:\d+$/.test(id)) return { reason: `cannot find the disk behind ${major}:${minor}` };
  return { id, name: devDir.slice(devDir.lastIndexOf('/') + 1) };
}

/** The first executable file named `name` on a PATH, or null. */
export function which(name: string, path = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'): string | null {
  if (name.includes('/')) return isExecutableFile(name) ? resolve(name) : null;
  for (const dir of path.split(':')) {
    if (!dir) continue;
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return null;
}

export function isExecutableFile(path: string): boolean {
  try {
    // A missing file is the usual case on the way along PATH: answered without an exception (a third of the CPU).
    const st = statSync(path, { throwIfNoEntry: false });
    if (!st?.isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The first directory from `path` up to '/' that a process of uid/gid (not root, no
 * supplementary groups) cannot traverse, or null when the whole way is open.
 */
export function firstUntraversable(path: string, uid: number, gid: number): string | null {
  for (let dir = resolve(path); ; dir = dirname(dir)) {
    const st = statSync(dir);
    const bits = st.uid === uid ? 0o100 : st.gid === gid ? 0o010 : 0o001;
    if ((st.mode & bits) === 0) return dir;
    if (dir === '/') return null;
  }
}

export function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** "key value" lines (cpu.stat, memory.events, memory.oom_control) as a record. */
export function keyValues(text: string | null): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of (text ?? '').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^\d+$/.test(v)) out[k] = Number(v);
  }
  return out;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}
