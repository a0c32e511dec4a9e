import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import type { SandboxKind } from '../../../../../libs/contracts/src';
import type { ProcessRunner } from '../../core/process-runner.port';
import { NodeProcessRunner } from '../node-process-runner';
import type { CgroupDriver } from './cgroup-driver';
import { CgroupV1Driver } from './cgroup-v1';
import { CgroupV2Driver } from './cgroup-v2';
import { firstUntraversable, which } from './host';
import { SANDBOX_DEFAULTS, SandboxRunner, type SandboxTools } from './sandbox-runner';

/** auto: the best the host allows, unsandboxed with a warning if nothing; none: never; required: fail at start-up rather than run unsandboxed. */
export const SandboxModeSchema = z.enum(['auto', 'none', 'required']);
export type SandboxMode = z.infer<typeof SandboxModeSchema>;

export const SandboxOptionsSchema = z.strictObject({
  mode: SandboxModeSchema.default('auto'),
  /** With the work root, names the executor's parent cgroup, jobline/<executorId>.<work root hash>. */
  executorId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
  /** This executor's own directory of workspaces. */
  workRoot: z.string().min(1),
  uid: z.number().int().min(1).max(2 ** 32 - 2).default(SANDBOX_DEFAULTS.uid),
  gid: z.number().int().min(1).max(2 ** 32 - 2).default(SANDBOX_DEFAULTS.gid),
  drainMs: z.number().int().min(0).max(60_000).optional(),
});
export type SandboxOptions = z.input<typeof SandboxOptionsSchema>;

export interface SandboxDetection {
  kind: SandboxKind;
  /** Goes into every started report (JobStarted.sandboxNote). */
  note?: string;
  /** Why each stronger kind was not possible, most preferred first. */
  refused: string[];
}

export interface DetectLogger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
}

/**
 * Decides at start-up what the host allows, cgroup v2 before v1 before none:
 * root, util-linux's unshare/setpriv/mount, namespaces that can really be created (one
 * `unshare` probe), a work root the job user can reach, and a cgroup hierarchy with the
 * controllers we need where we may create `jobline/<executorId>.<work root hash>`. Logs the outcome.
 */
export function detectSandbox(options: SandboxOptions, logger?: DetectLogger): { runner: ProcessRunner; detection: SandboxDetection } {
  const o = SandboxOptionsSchema.parse(options);
  const workRoot = resolve(o.workRoot);
  const refused: string[] = [];
  let chosen: { driver: CgroupDriver; tools: SandboxTools } | null = null;
  if (o.mode === 'none') {
    refused.push('the sandbox is turned off by configuration');
  } else {
    const base = sandboxPrerequisites(workRoot, o.uid, o.gid);
    if ('reason' in base) refused.push(base.reason);
    else {
      for (const probe of [CgroupV2Driver.probe, CgroupV1Driver.probe]) {
        const d = probe({ executorId: o.executorId, workRoot });
        if ('reason' in d) refused.push(d.reason);
        else {
          chosen = { driver: d, tools: base.tools };
          break;
        }
      }
    }
  }

  if (chosen) {
    const notes = chosen.tools.ip ? [] : ['no ip(8): loopback stays down inside jobs without network'];
    const runner = new SandboxRunner({ workRoot, driver: chosen.driver, tools: chosen.tools, uid: o.uid, gid: o.gid, drainMs: o.drainMs, notes });
    const detection: SandboxDetection = { kind: runner.kind, ...(runner.note ? { note: runner.note } : {}), refused };
    logger?.info({ sandbox: detection.kind, note: detection.note, refused, uid: o.uid, gid: o.gid }, `sandbox: ${detection.kind}`);
    return { runner, detection };
  }
  const note = `no sandbox (${refused.join('; ')}): attempts run as the executor's user, without cgroup limits or namespaces`;
  if (o.mode === 'required') throw new Error(`JOBLINE_SANDBOX=required but ${note}`);
  if (o.mode === 'none') logger?.info({ sandbox: 'none' }, 'sandbox turned off: attempts run unsandboxed');
  else logger?.warn({ sandbox: 'none', refused }, `UNSANDBOXED: ${note}`);
  const runner = new NodeProcessRunner({ workRoot, drainMs: o.drainMs, note });
  return { runner, detection: { kind: 'none', note, refused } };
}

/** Root, the tools, working namespaces and a reachable work root: what every cgroup kind needs. */
export function sandboxPrerequisites(workRoot: string, uid: number, gid: number): { tools: SandboxTools } | { reason: string } {
  if (process.platform !== 'linux') return { reason: `${process.platform} is not Linux` };
  if (typeof process.geteuid !== 'function' || process.geteuid() !== 0) return { reason: 'not running as root' };
  const tools = { sh: which('sh'), unshare: which('unshare'), setpriv: which('setpriv'), mount: which('mount'), env: which('env'), ip: which('ip') };
  const missing = (['sh', 'unshare', 'setpriv', 'mount', 'env'] as const).filter((t) => !tools[t]);
  if (missing.length > 0) return { reason: `${missing.join(', ')} not found (util-linux and coreutils are needed)` };
  const probe = spawnSync(tools.unshare!, ['--pid', '--mount', '--ipc', '--uts', '--net', '--fork', '--mount-proc', tools.sh!, '-c', 'exit 0'], {
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (probe.status !== 0) return { reason: `cannot create namespaces: ${(probe.stderr || probe.error?.message || `exit ${probe.status}`).trim()}` };
  mkdirSync(workRoot, { recursive: true });
  const blocked = firstUntraversable(resolve(workRoot, '..'), uid, gid);
  if (blocked) return { reason: `uid ${uid} cannot reach the work root: ${blocked} is not searchable by others (chmod o+x it or choose another JOBLINE_WORK_ROOT)` };
  return { tools: tools as SandboxTools };
}
