import { EXECUTOR_ENV_VARS, natsHostPorts, type ExecutorConfig } from '../core/executor-config';

/**
 * How to start the executor under Deno: one place for the flags, used by the docs, the
 * tests and any launcher. Runtime-neutral on purpose (plain data), so Node code may build
 * the command too.
 */

/** The Deno entry, relative to the repository root. */
export const DENO_ENTRY = 'apps/executor/src/deno/main.deno.ts';

/**
 * Module loading, fixed so a clean checkout runs offline with what `npm ci` installed:
 * - --sloppy-imports: the same .ts files compile to CommonJS for Node, so their relative
 *   imports carry no extension and may name a folder (its index.ts); this lets Deno
 *   resolve them the way tsc does (Deno ≥ 2.4; older 2.x spell it --unstable-sloppy-imports).
 * - --node-modules-dir=manual: npm packages (@nats-io/*, zod) come from the existing
 *   node_modules, resolved like Node does; Deno downloads and writes nothing there.
 * - --no-config, --no-lock, --no-remote: no deno.json or deno.lock is looked for or
 *   written, and no module is fetched from the network.
 * - --no-prompt: a missing permission is an error at once, never a question on a TTY.
 */
export const DENO_RUN_FLAGS = ['--no-config', '--no-lock', '--no-remote', '--no-prompt', '--sloppy-imports', '--node-modules-dir=manual'] as const;

/**
 * The narrowest permissions the executor works with:
 * - net: only the NATS servers of JOBLINE_NATS_URL (host:port exactly as written there);
 * - env: only the executor's own variables;
 * - read, write: only the work root (workspaces and running.json);
 * - sys: only uid, to refuse running jobs as root by accident;
 * - run: unrestricted, because jobs run any program by name, and Deno.kill, which signals
 *   an attempt's process group, needs unrestricted run. Deno does not confine subprocesses:
 *   the isolation of a job is the sandbox's business, not Deno's.
 */
export function denoPermissionFlags(config: Pick<ExecutorConfig, 'natsUrl' | 'workRoot'>): string[] {
  // Deno splits a permission's list at commas: such a path cannot be granted.
  if (config.workRoot.includes(',')) throw new Error(`the work root ${JSON.stringify(config.workRoot)} must not contain a comma under Deno`);
  return [
    `--allow-net=${natsHostPorts(config.natsUrl).join(',')}`,
    `--allow-env=${EXECUTOR_ENV_VARS.join(',')}`,
    `--allow-read=${config.workRoot}`,
    `--allow-write=${config.workRoot}`,
    '--allow-run',
    // Its own uid only: as root without a sandbox it refuses to start (see sandboxRefusal).
    '--allow-sys=uid',
  ];
}

/** The arguments after `deno`: run, the loading flags, the permissions, the entry. */
export function denoExecutorArgs(config: Pick<ExecutorConfig, 'natsUrl' | 'workRoot'>, entry: string = DENO_ENTRY): string[] {
  return ['run', ...DENO_RUN_FLAGS, ...denoPermissionFlags(config), entry];
}
