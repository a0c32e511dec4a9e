import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { JobSpec, ResourceUsage } from '../../../../../libs/contracts/src';
import { applyPlan, ATTEMPT_CGROUP_NAME, childCgroups, executorCgroupName, ioLimitsAsked, cpuQuota, parsePids, removeCgroupDir, sleep, type AttemptCgroup, type CgroupDriver, type CgroupPlan } from './cgroup-driver';
import { killQuietly } from '../proc-scan';
import { backingDisk, cgroupDir, cgroupMounts, keyValues, ownCgroups, readText, type BlockDevice } from './host';

const REQUIRED = ['cpu', 'memory', 'pids'] as const;

export interface CgroupV2Probe {
  /** With the work root, names this executor's parent cgroup under our own cgroup (see executorCgroupName). */
  executorId: string;
  /** The directory that holds the workspaces: its disk gets the io limit, and it scopes the parent cgroup. */
  workRoot: string;
}

/**
 * cgroup v2 (the unified hierarchy): the attempt gets `jobline/<executorId>.<work root hash>/<attempt>`
 * under this process' own cgroup, which must be delegated to us (writable, with the cpu,
 * memory and pids controllers available).
 */
export class CgroupV2Driver implements CgroupDriver {
  readonly kind = 'cgroup-v2' as const;

  private constructor(
    readonly parentName: string,
    private readonly parent: string,
    private readonly disk: BlockDevice | null,
    readonly notes: readonly string[],
    /** memory.swap.max exists (swap accounting on): memory limits then cover swap too. */
    private readonly hasSwapMax: boolean,
  ) {}

  /** The driver, or why this host offers no usable v2 hierarchy. Creates the executor's parent cgroup with controllers enabled. */
  static probe(p: CgroupV2Probe): CgroupV2Driver | { reason: string } {
    const mount = cgroupMounts().find((m) => m.fstype === 'cgroup2');
    const own = ownCgroups().get('');
    if (!mount || own === undefined) return { reason: 'no cgroup v2 hierarchy is mounted' };
    const base = cgroupDir(mount, own);
    if (!base) return { reason: `our cgroup ${own} is not visible under ${mount.mountpoint}` };
    const available = (readText(join(base, 'cgroup.controllers')) ?? '').trim().split(/\s+/).filter(Boolean);
    const missing = REQUIRED.filter((c) => !available.includes(c));
    if (missing.length > 0) {
      return { reason: `cgroup v2 at ${base} lacks the ${missing.join(', ')} controller${missing.length > 1 ? 's' : ''} (available: ${available.join(' ') || 'none'})` };
    }
    const notes: string[] = [];
    const wanted = [...REQUIRED, ...(available.includes('io') ? ['io'] : [])];
    if (!wanted.includes('io')) notes.push('no io controller delegated: io limits cannot be enforced (jobs asking for them are refused)');
    const parentName = executorCgroupName(p.executorId, p.workRoot);
    const parent = join(base, parentName);
    try {
      enableControllers(base, wanted, own === '/');
      mkdirSync(join(base, 'jobline'), { recursive: true });
      enableControllers(join(base, 'jobline'), wanted, false);
      mkdirSync(parent, { recursive: true });
      enableControllers(parent, wanted, false);
    } catch (err) {
      return { reason: `cannot set up ${parent}: ${(err as Error).message}` };
    }
    let disk: BlockDevice | null = null;
    if (wanted.includes('io')) {
      const d = backingDisk(p.workRoot);
      if ('reason' in d) notes.push(`io limits cannot be enforced (${d.reason}): jobs asking for them are refused`);
      else disk = d;
    }
    if (!existsSync(join(parent, 'cgroup.kill'))) notes.push('no cgroup.kill (kernel before 5.14): stop freezes and kills instead');
    const hasSwapMax = existsSync(join(parent, 'memory.swap.max'));
    return new CgroupV2Driver(parentName, parent, disk, notes, hasSwapMax);
  }

  unenforceable(resources: JobSpec['resources'] | undefined): string[] {
    return this.disk ? [] : ioLimitsAsked(resources);
  }

  create(name: string, resources: JobSpec['resources'] | undefined): Promise<AttemptCgroup> {
    return applyPlan(this.plan(name, resources));
  }

  plan(name: string, resources: JobSpec['resources'] | undefined): CgroupPlan {
    const cg = this.open(name);
    const r = resources ?? {};
    const writes: [string, string][] = [];
    const at = (file: string, value: string | number) => writes.push([join(cg.dir, file), String(value)]);
    if (r.cpu !== undefined) {
      const q = cpuQuota(r.cpu);
      at('cpu.max', `${q.quotaUs} ${q.periodUs}`);
    }
    if (r.memoryMb !== undefined) {
      at('memory.max', r.memoryMb * 1024 * 1024);
      if (this.hasSwapMax) at('memory.swap.max', 0);
    }
    if (r.pids !== undefined) at('pids.max', r.pids);
    if (this.disk && (r.ioReadBps !== undefined || r.ioWriteBps !== undefined)) {
      const parts = [this.disk.id];
      if (r.ioReadBps !== undefined) parts.push(`rbps=${r.ioReadBps}`);
      if (r.ioWriteBps !== undefined) parts.push(`wbps=${r.ioWriteBps}`);
      at('io.max', parts.join(' '));
    }
    return { cgroup: cg, dirs: [cg.dir], writes };
  }

  list(): string[] {
    return childCgroups(this.parent).filter((n) => ATTEMPT_CGROUP_NAME.test(n));
  }

  async removeParent(): Promise<void> {
    await removeCgroupDir(this.parent);
  }

  open(name: string): V2AttemptCgroup {
    if (!ATTEMPT_CGROUP_NAME.test(name)) throw new Error(`invalid cgroup name ${JSON.stringify(name)}`);
    return new V2AttemptCgroup(name, join(this.parent, name));
  }
}

/**
 * Turns controllers on for a cgroup's children. A non-root cgroup with processes of its
 * own cannot (the "no internal processes" rule): they move to a leaf `supervisor` first,
 * as container runtimes do in a delegated cgroup.
 */
function enableControllers(dir: string, controllers: readonly string[], isRoot: boolean): void {
  const file = join(dir, 'cgroup.subtree_control');
  const enabled = (readText(file) ?? '').trim().split(/\s+/);
  const todo = controllers.filter((c) => !enabled.includes(c));
  if (todo.length === 0) return;
  const line = todo.map((c) => `+${c}`).join(' ');
  try {
    writeFileSync(file, line);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EBUSY' || isRoot) throw err;
    const leaf = join(dir, 'supervisor');
    mkdirSync(leaf, { recursive: true });
    for (const pid of parsePids(readText(join(dir, 'cgroup.procs')))) {
      try {
        writeFileSync(join(leaf, 'cgroup.procs'), String(pid));
      } catch {
        // exited meanwhile
      }
    }
    writeFileSync(file, line);
  }
}

class V2AttemptCgroup implements AttemptCgroup {
  readonly procsFiles: readonly string[];

  constructor(
    readonly name: string,
    readonly dir: string,
  ) {
    this.procsFiles = [join(dir, 'cgroup.procs')];
  }

  pids(): number[] {
    return parsePids(readText(join(this.dir, 'cgroup.procs')));
  }

  signal(sig: NodeJS.Signals): void {
    for (const pid of this.pids()) killQuietly(pid, sig);
  }

  async killAll(): Promise<void> {
    const kill = join(this.dir, 'cgroup.kill');
    const hasKill = existsSync(kill);
    for (let round = 0; ; round++) {
      if (this.pids().length === 0) return;
      if (hasKill) {
        writeFileSync(kill, '1');
      } else {
        writeFileSync(join(this.dir, 'cgroup.freeze'), '1');
        for (const pid of this.pids()) killQuietly(pid, 'SIGKILL');
        writeFileSync(join(this.dir, 'cgroup.freeze'), '0');
      }
      // cgroup.procs empties once the killed tasks are gone.
      await sleep(round === 0 ? 1 : 10);
      if (round >= 200) throw new Error(`cgroup ${this.name} still has processes after repeated kills`);
    }
  }

  usage(): ResourceUsage | null {
    const cpu = keyValues(readText(join(this.dir, 'cpu.stat')));
    // memory.peak exists since 5.19; before it, the current usage is the best there is.
    const peak = readText(join(this.dir, 'memory.peak')) ?? readText(join(this.dir, 'memory.current'));
    if (cpu.usage_usec === undefined || peak === null) return null;
    return { cpuMs: Math.round(cpu.usage_usec / 1000), maxRssBytes: Number(peak.trim()) };
  }

  oomKilled(): boolean {
    return (keyValues(readText(join(this.dir, 'memory.events'))).oom_kill ?? 0) > 0;
  }

  async remove(): Promise<void> {
    await removeCgroupDir(this.dir);
  }
}
