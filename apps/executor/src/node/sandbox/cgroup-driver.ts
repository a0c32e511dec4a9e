import { createHash } from 'node:crypto';
import { readdirSync, realpathSync } from 'node:fs';
import { mkdir, rmdir, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { JobSpec, ResourceUsage } from '../../../../../libs/contracts/src';
import { ATTEMPT_ID } from '../../core/running-record';

/**
 * What differs between cgroup v1 and v2, one implementation per file (cgroup-v1.ts,
 * cgroup-v2.ts). The namespaces, workspace and process handling around it are shared
 * (sandbox-runner.ts).
 */
export interface CgroupDriver {
  readonly kind: 'cgroup-v1' | 'cgroup-v2';
  /** This executor's parent cgroup, relative to our own cgroup: `jobline/<executorId>.<hash of the work root>`. */
  readonly parentName: string;
  /** What the host does not allow (e.g. no io throttling on an overlay), for the started report. */
  readonly notes: readonly string[];
  /** The limits of `resources` this driver cannot apply (e.g. io on an overlay); an attempt asking for one is refused, never run without it. */
  unenforceable(resources: JobSpec['resources'] | undefined): string[];
  /** Creates the attempt's cgroup with its limits. Throws when the host refuses. */
  create(name: string, resources: JobSpec['resources'] | undefined): Promise<AttemptCgroup>;
  /**
   * What create() does, as steps for someone else to carry out (the launcher, in the same
   * process that starts the attempt): make each directory, then write each (file, value) in
   * order. Touches nothing itself.
   */
  plan(name: string, resources: JobSpec['resources'] | undefined): CgroupPlan;
  /** The attempt cgroups that exist under this executor's parent (leftovers after a crash, or live ones). */
  list(): string[];
  /** A handle on an existing attempt cgroup, to kill and remove a leftover. */
  open(name: string): AttemptCgroup;
  /** Removes this executor's parent cgroup(s) once no attempt cgroup is left (a retired executor id). */
  removeParent(): Promise<void>;
}

export interface CgroupPlan {
  cgroup: AttemptCgroup;
  dirs: string[];
  writes: [file: string, value: string][];
}

/** Carries a plan out here, through the thread pool: the directories at once, then the writes in order. */
export async function applyPlan(plan: CgroupPlan): Promise<AttemptCgroup> {
  try {
    await Promise.all(plan.dirs.map((dir) => mkdir(dir)));
    for (const [file, value] of plan.writes) await writeFile(file, value);
  } catch (err) {
    await plan.cgroup.remove().catch(() => undefined);
    throw err;
  }
  return plan.cgroup;
}

export interface AttemptCgroup {
  readonly name: string;
  /** One cgroup.procs per hierarchy: the init writes 0 to each to join before anything of the job runs. */
  readonly procsFiles: readonly string[];
  /** The processes in the cgroup now (host pids). */
  pids(): number[];
  /** A signal to every process of the cgroup. */
  signal(sig: NodeJS.Signals): void;
  /** SIGKILL to everything in the cgroup until it is empty (cgroup.kill on v2; freeze, kill, thaw on v1). */
  killAll(): Promise<void>;
  /** CPU time and peak memory so far; null if the files cannot be read. */
  usage(): ResourceUsage | null;
  /** Did the kernel OOM-kill a process of this cgroup? killedBySigkill is the main process' fate, for the v1 heuristic where no counter exists. */
  oomKilled(killedBySigkill: boolean): boolean;
  /** Removes the cgroup directories (after killAll). */
  remove(): Promise<void>;
}

/**
 * The executor's parent cgroup, relative to our own: `jobline/<executorId>.<12 hex>`, the
 * hex being the start of the sha256 of the work root's real path. The leftover clean-up
 * kills every attempt cgroup under it, so two executors with the same id on one host (two
 * dev stacks in different data folders, both `local`) must not share it: only a restart of
 * the same executor on the same work root finds its predecessor's cgroups. `.` cannot occur
 * in an executor id, so no other id and hash make the same name.
 */
export function executorCgroupName(executorId: string, workRoot: string): string {
  let root = resolve(workRoot);
  try {
    root = realpathSync(root);
  } catch {
    // Not created yet: its resolved path names it.
  }
  return `jobline/${executorId}.${createHash('sha256').update(root).digest('hex').slice(0, 12)}`;
}

/** An attempt's cgroup is named by its attempt id. */
export const ATTEMPT_CGROUP_NAME = ATTEMPT_ID;

/** The v1 and v2 cpu quota for a fraction of cores, with the usual 100 ms period. */
export function cpuQuota(cpu: number): { quotaUs: number; periodUs: number } {
  const periodUs = 100_000;
  return { quotaUs: Math.max(1000, Math.round(cpu * periodUs)), periodUs };
}

export function parsePids(text: string | null): number[] {
  if (!text) return [];
  const out: number[] = [];
  for (const line of text.split('\n')) if (line) out.push(Number(line));
  return out;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** rmdir, retried while the kernel still holds the cgroup busy (tasks exiting). */
export async function removeCgroupDir(dir: string): Promise<void> {
  for (let tries = 0; ; tries++) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || tries >= 100) throw err;
      await sleep(20);
    }
  }
}

/** Sub-directories of a cgroup directory: its child cgroups. */
export function childCgroups(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
  } catch {
    return [];
  }
}

/** The io limits a spec asks for, by name, for a driver that cannot apply them. */
export function ioLimitsAsked(resources: JobSpec['resources'] | undefined): string[] {
  return (['ioReadBps', 'ioWriteBps'] as const).filter((k) => resources?.[k] !== undefined).map((k) => `resources.${k}`);
}
