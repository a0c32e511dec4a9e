import type { JobSpec } from '../../../../libs/contracts/src';
import { stepsScript } from '../../../../libs/contracts/src/shell-script';

/** PATH for every attempt: the executor's own PATH never leaks into a job. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** What to launch for a spec; HOME is left to the runner, which alone knows where the workspace is. */
export interface Command {
  argv: string[];
  env: Record<string, string>;
  /** Relative to the workspace; undefined means the workspace itself. */
  cwd?: string;
}

export type CommandSpec = Pick<JobSpec, 'command' | 'steps' | 'env' | 'workdir'>;

/**
 * Turns a spec into argv, environment and working directory:
 * an argv array runs as is, a string runs with `/bin/sh -c`, steps run as one shell
 * script (see {@link stepsScript}). Throws when the spec names nothing to run.
 */
export function buildCommand(spec: CommandSpec, defaultPath = DEFAULT_PATH): Command {
  const env: Record<string, string> = { PATH: defaultPath, ...spec.env };
  // An empty PATH would make every bare program name unresolvable, which no one means.
  if (!env.PATH || env.PATH.trim() === '') env.PATH = defaultPath;
  return { argv: argvOf(spec), env, cwd: spec.workdir };
}

function argvOf(spec: CommandSpec): string[] {
  if (Array.isArray(spec.command)) {
    if (spec.command.length === 0 || spec.command[0].trim() === '') throw new Error('command must name a program');
    return [...spec.command];
  }
  if (typeof spec.command === 'string') {
    if (spec.command.trim() === '') throw new Error('command must not be empty');
    return ['/bin/sh', '-c', spec.command];
  }
  if (spec.steps && spec.steps.length > 0) return ['/bin/sh', '-c', stepsScript(spec.steps)];
  throw new Error('the spec has neither command nor steps');
}
