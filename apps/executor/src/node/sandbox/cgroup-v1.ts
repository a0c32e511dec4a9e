import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { JobSpec, ResourceUsage } from '../../../../../libs/contracts/src';
import { applyPlan, ATTEMPT_CGROUP_NAME, childCgroups, executorCgroupName, ioLimitsAsked, cpuQuota, parsePids, removeCgroupDir, sleep, type AttemptCgroup, type CgroupDriver, type CgroupPlan } from './cgroup-driver';
import { killQuietly } from '../proc-scan';
import { backingDisk, cgroupDir, cgroupMounts, keyValues, ownCgroups, readText, type BlockDevice } from './host';

/** Controllers without which there is no v1 sandbox. */
const REQUIRED = ['cpu', 'cpuacct', 'memory', 'pids'] as const;
/** Used when present: freezer makes killAll atomic, blkio throttles io. */
const OPTIONAL = ['freezer', 'blkio'] as const;
type Controller = (typeof REQUIRED)[number] | (typeof OPTIONAL)[number];

export interface CgroupV1Probe {
  /** With the work root, names this executor's parent cgroup under our own cgroup of each hierarchy (see executorCgroupName). */
  executorId: string;
  /** The directory that holds the workspaces: its disk gets the io throttle, and it scopes the parent cgroup. */
  workRoot: string;
}

/**
 * cgroup v1 (one hierarchy per controller, or a few co-mounted): the attempt gets a
 * cgroup `jobline/<executorId>.<work root hash>/<attempt>` under this process' own cgroup in each of the
 * cpu, cpuacct, memory, pids (and freezer, blkio) hierarchies.
 */
export class CgroupV1Driver implements CgroupDriver {
  readonly kind = 'cgroup-v1' as const;

  private constructor(
    readonly parentName: string,
    /** controller → this executor's parent directory in that controller's hierarchy. */
    private readonly parents: ReadonlyMap<Controller, string>,
    private readonly disk: BlockDevice | null,
    private readonly hasMemsw: boolean,
    readonly notes: readonly string[],
  ) {}

  /** The driver, or why this host offers no usable v1 hierarchies. Creates the executor's parent cgroups. */
  static probe(p: CgroupV1Probe): CgroupV1Driver | { reason: string } {
    const mounts = cgroupMounts().filter((m) => m.fstype === 'cgroup');
    if (mounts.length === 0) return { reason: 'no cgroup v1 hierarchy is mounted' };
    const own = ownCgroups();
    const parents = new Map<Controller, string>();
    const notes: string[] = [];
    const parentName = executorCgroupName(p.executorId, p.workRoot);
    for (const c of [...REQUIRED, ...OPTIONAL]) {
      const mount = mounts.find((m) => m.controllers.includes(c));
      const path = own.get(c);
      const base = mount && path !== undefined ? cgroupDir(mount, path) : null;
      if (!base) {
        if ((REQUIRED as readonly string[]).includes(c)) return { reason: `the cgroup v1 ${c} controller is not mounted` };
        notes.push(c === 'freezer' ? 'no freezer hierarchy: stop kills without freezing first' : 'no blkio hierarchy: io limits cannot be enforced (jobs asking for them are refused)');
        continue;
      }
      const dir = join(base, parentName);
      try {
        mkdirSync(dir, { recursive: true });
      } catch (err) {
        if ((REQUIRED as readonly string[]).includes(c)) return { reason: `cannot create ${dir}: ${(err as Error).message}` };
        notes.push(`cannot use the ${c} hierarchy (${(err as Error).message})`);
        continue;
      }
      parents.set(c, dir);
    }
    const hasMemsw = existsSync(join(parents.get('memory')!, 'memory.memsw.limit_in_bytes'));
    if (!hasMemsw) notes.push('no memory.memsw (swap accounting off): memory limits do not cover swap');
    let disk: BlockDevice | null = null;
    if (parents.has('blkio')) {
      const d = backingDisk(p.workRoot);
      if ('reason' in d) notes.push(`io limits cannot be enforced (${d.reason}): jobs asking for them are refused`);
      else disk = d;
    }
    return new CgroupV1Driver(parentName, parents, disk, hasMemsw, notes);
  }

  unenforceable(resources: JobSpec['resources'] | undefined): string[] {
    return this.disk && this.parents.has('blkio') ? [] : ioLimitsAsked(resources);
  }

  create(name: string, resources: JobSpec['resources'] | undefined): Promise<AttemptCgroup> {
    return applyPlan(this.plan(name, resources));
  }

  plan(name: string, resources: JobSpec['resources'] | undefined): CgroupPlan {
    const cg = this.open(name);
    const r = resources ?? {};
    const writes: [string, string][] = [];
    const at = (c: Controller, file: string, value: string | number) => writes.push([join(cg.dirs.get(c)!, file), String(value)]);
    if (r.cpu !== undefined) {
      const q = cpuQuota(r.cpu);
      at('cpu', 'cpu.cfs_period_us', q.periodUs);
      at('cpu', 'cpu.cfs_quota_us', q.quotaUs);
    }
    if (r.memoryMb !== undefined) {
      const bytes = r.memoryMb * 1024 * 1024;
      at('memory', 'memory.limit_in_bytes', bytes);
      // memory+swap equal to memory: no swap at all (memsw must be set after, never below, the memory limit).
      if (this.hasMemsw) at('memory', 'memory.memsw.limit_in_bytes', bytes);
    }
    if (r.pids !== undefined) at('pids', 'pids.max', r.pids);
    if (this.disk && cg.dirs.has('blkio') && r.ioReadBps !== undefined) at('blkio', 'blkio.throttle.read_bps_device', `${this.disk.id} ${r.ioReadBps}`);
    if (this.disk && cg.dirs.has('blkio') && r.ioWriteBps !== undefined) at('blkio', 'blkio.throttle.write_bps_device', `${this.disk.id} ${r.ioWriteBps}`);
    return { cgroup: cg, dirs: [...new Set(cg.dirs.values())], writes };
  }

  list(): string[] {
    const names = new Set<string>();
    for (const dir of this.parents.values()) for (const n of childCgroups(dir)) if (ATTEMPT_CGROUP_NAME.test(n)) names.add(n);
    return [...names];
  }

  async removeParent(): Promise<void> {
    for (const dir of new Set(this.parents.values())) await removeCgroupDir(dir);
  }

  open(name: string): V1AttemptCgroup {
    if (!ATTEMPT_CGROUP_NAME.test(name)) throw new Error(`invalid cgroup name ${JSON.stringify(name)}`);
    const dirs = new Map<Controller, string>();
    for (const [c, parent] of this.parents) dirs.set(c, join(parent, name));
    return new V1AttemptCgroup(name, dirs);
  }
}

class V1AttemptCgroup implements AttemptCgroup {
  readonly procsFiles: readonly string[];

  constructor(
    readonly name: string,
    readonly dirs: ReadonlyMap<Controller, string>,
  ) {
    // Co-mounted controllers (cpu,cpuacct) share one directory: join it once.
    this.procsFiles = [...new Set(dirs.values())].map((d) => join(d, 'cgroup.procs'));
  }

  private file(c: Controller, f: string): string {
    return join(this.dirs.get(c)!, f);
  }

  pids(): number[] {
    // Every process joins every hierarchy before the job starts; the job cannot leave (the files are root's).
    return parsePids(readText(this.file('pids', 'cgroup.procs')));
  }

  signal(sig: NodeJS.Signals): void {
    for (const pid of this.pids()) killQuietly(pid, sig);
  }

  async killAll(): Promise<void> {
    const freezer = this.dirs.has('freezer') ? this.file('freezer', 'freezer.state') : null;
    for (let round = 0; ; round++) {
      if (this.pids().length === 0) return;
      // Frozen, nothing can fork between reading the list and the kills.
      if (freezer) await this.freeze(freezer);
      for (const pid of this.pids()) killQuietly(pid, 'SIGKILL');
      if (freezer) writeFileSync(freezer, 'THAWED');
      if (this.pids().length === 0) return;
      if (round >= 200) throw new Error(`cgroup ${this.name} still has processes after repeated SIGKILL`);
      await sleep(10);
    }
  }

  private async freeze(stateFile: string): Promise<void> {
    writeFileSync(stateFile, 'FROZEN');
    for (let i = 0; i < 100; i++) {
      if (readText(stateFile)?.trim() === 'FROZEN') return;
      await sleep(5);
    }
    // A task stuck in the kernel may keep it FREEZING: kill anyway, the loop goes round again.
  }

  usage(): ResourceUsage | null {
    const cpuNs = readText(this.file('cpuacct', 'cpuacct.usage'));
    const peak = readText(this.file('memory', 'memory.max_usage_in_bytes'));
    if (cpuNs === null || peak === null) return null;
    return { cpuMs: Math.round(Number(cpuNs.trim()) / 1e6), maxRssBytes: Number(peak.trim()) };
  }

  oomKilled(killedBySigkill: boolean): boolean {
    const ctl = keyValues(readText(this.file('memory', 'memory.oom_control')));
    // Kernels since 4.13 count OOM kills per cgroup.
    if (ctl.oom_kill !== undefined) return ctl.oom_kill > 0;
    // Older: the limit was hit and the main process died of SIGKILL, which is what the OOM killer sends.
    const failcnt = Number(readText(this.file('memory', 'memory.failcnt'))?.trim() ?? 0);
    const memswFail = Number(readText(this.file('memory', 'memory.memsw.failcnt'))?.trim() ?? 0);
    return killedBySigkill && (failcnt > 0 || memswFail > 0);
  }

  async remove(): Promise<void> {
    for (const dir of new Set(this.dirs.values())) await removeCgroupDir(dir);
  }
}
