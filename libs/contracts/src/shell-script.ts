import type { JobSpec } from './job-spec.schema';

/**
 * One POSIX shell script running each step in its own `/bin/sh -c` (so a step's
 * `exit` or syntax error ends only that step), with a `==> [i/n] name` marker on stderr
 * before each, stopping at the first failure with that step's exit code.
 */
export function stepsScript(steps: NonNullable<JobSpec['steps']>): string {
  const n = steps.length;
  const lines: string[] = [];
  steps.forEach((step, i) => {
    lines.push(`printf '%s\\n' ${shellQuote(`==> [${i + 1}/${n}] ${step.name}`)} >&2`);
    lines.push(`/bin/sh -c ${shellQuote(step.run)} || exit $?`);
  });
  return lines.join('\n') + '\n';
}

/** Single-quotes a string for a POSIX shell: nothing inside is interpreted. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
