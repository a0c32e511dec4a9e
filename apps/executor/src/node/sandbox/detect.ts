import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import type { SandboxKind } from '../../../../../libs/contracts/src';
import type { ProcessRunner } from '../../core/process-runner.port';
import { findLauncher } from '../launcher/launcher-build';
import { LauncherHandle, probeSandbox } from '../launcher/launcher-client';
import { NodeProcessRunner } from '../node-process-runner';
import type { CgroupDriver } from './cgroup-driver';
import { CgroupV1Driver } from './cgroup-v1';
import { CgroupV2Driver } from './cgroup-v2';
import { SANDBOX_DEFAULTS, SandboxRunner, maskFor } from './sandbox-runner';

/**
 * auto: a full sandbox wherever the host allows one (as root on Linux); as root, refuse to
 * start when it cannot be set up; not as root, run unsandboxed as the executor's user and say
 * so in every JobStarted. required: a full sandbox or refuse to start. none: never sandbox
 * (explicit; recorded in every JobStarted).
 */
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
  /** The jobline-launcher binary (default: dist/bin/jobline-launcher, built from its source when missing or stale). */
  launcherPath: z.string().min(1).optional(),
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

/** The executor must not start: the sandbox its configuration asks for cannot be set up. */
export class SandboxUnavailableError extends Error {
  readonly code = 'SANDBOX_UNAVAILABLE';
  override name = 'SandboxUnavailableError';
}

const isRoot = () => typeof process.geteuid === 'function' && process.geteuid() === 0;

/**
 * Decides at start-up what the executor runs its attempts in, failing closed: cgroup v2
 * before v1, each with the namespaces and the unprivileged user; unsandboxed only when the
 * configuration says `none` or, under `auto`, when the host allows no sandbox at all (not
 * root). Throws a {@link SandboxUnavailableError} (saying why) rather than run with less
 * isolation than asked. Logs the outcome.
 */
export function detectSandbox(options: SandboxOptions, logger?: DetectLogger): { runner: ProcessRunner; detection: SandboxDetection } {
  const o = SandboxOptionsSchema.parse(options);
  const workRoot = resolve(o.workRoot);
  const launcher = o.launcherPath ? { path: resolve(o.launcherPath) } : findLauncher();

  if (o.mode === 'none') {
    const asRoot = isRoot() ? ': jobs run as root, without cgroup limits or namespaces' : '';
    const note = `sandbox turned off by configuration (JOBLINE_SANDBOX=none)${asRoot}`;
    if (asRoot) logger?.warn({ sandbox: 'none' }, `UNSANDBOXED: ${note}`);
    else logger?.info({ sandbox: 'none' }, note);
    return { runner: plainRunner(workRoot, o.drainMs, note, launcher, logger), detection: { kind: 'none', note, refused: [note] } };
  }

  mkdirSync(workRoot, { recursive: true });
  const refused: string[] = [];
  let chosen: CgroupDriver | null = null;
  let mask = '';
  const host = hostAllowsSandbox();
  if (host) refused.push(host);
  else if ('reason' in launcher) refused.push(`no jobline-launcher: ${launcher.reason}`);
  else {
    const failed = probeSandbox(launcher.path, o.uid, o.gid);
    if (failed) refused.push(`the sandbox probe failed: ${failed}`);
    else {
      try {
        mask = maskFor(workRoot, o.uid, o.gid);
      } catch (err) {
        refused.push((err as Error).message);
      }
      if (mask) {
        for (const probe of [CgroupV2Driver.probe, CgroupV1Driver.probe]) {
          const d = probe({ executorId: o.executorId, workRoot });
          if ('reason' in d) refused.push(d.reason);
          else {
            chosen = d;
            break;
          }
        }
      }
    }
  }

  if (chosen && 'path' in launcher) {
    const runner = new SandboxRunner({ workRoot, driver: chosen, launcher: new LauncherHandle(launcher.path), uid: o.uid, gid: o.gid, drainMs: o.drainMs });
    const detection: SandboxDetection = { kind: runner.kind, ...(runner.note ? { note: runner.note } : {}), refused };
    logger?.info({ sandbox: detection.kind, note: detection.note, refused, uid: o.uid, gid: o.gid, masked: runner.maskedPath }, `sandbox: ${detection.kind}`);
    return { runner, detection };
  }
  const why = refused.join('; ');
  if (o.mode === 'required') throw new SandboxUnavailableError(`JOBLINE_SANDBOX=required but no sandbox can be set up: ${why}`);
  if (!host) {
    // Root on Linux: a sandbox should work here. Never fall back to running jobs as root.
    throw new SandboxUnavailableError(
      `the sandbox cannot be set up although this host should allow it (${why}); fix that, or set JOBLINE_SANDBOX=none to run jobs unsandboxed as root on purpose`,
    );
  }
  const note = `no sandbox (${why}): attempts run as the executor's user, without cgroup limits or namespaces`;
  logger?.warn({ sandbox: 'none', refused }, `UNSANDBOXED: ${note}`);
  return { runner: plainRunner(workRoot, o.drainMs, note, launcher, logger), detection: { kind: 'none', note, refused } };
}

/** Why this host allows no sandbox at all (not Linux, not root), or null when it should. */
export function hostAllowsSandbox(): string | null {
  if (process.platform !== 'linux') return `${process.platform} is not Linux`;
  if (!isRoot()) return `not running as root (uid ${process.geteuid?.() ?? '?'})`;
  return null;
}

function plainRunner(workRoot: string, drainMs: number | undefined, note: string, launcher: { path: string } | { reason: string }, logger?: DetectLogger): NodeProcessRunner {
  if ('path' in launcher) return new NodeProcessRunner({ workRoot, drainMs, note, launcher: new LauncherHandle(launcher.path) });
  const weaker = `${note}; no jobline-launcher (${launcher.reason}): a killed executor's jobs may outlive it`;
  logger?.warn({ sandbox: 'none' }, weaker);
  return new NodeProcessRunner({ workRoot, drainMs, note: weaker });
}
