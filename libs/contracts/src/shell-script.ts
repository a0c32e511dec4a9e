import type { JobSpec } from './job-spec.schema';

/** The variables through which an executor hands a staged script its boundary token and its gate folder (README "Staged pipelines"). */
export const STEP_TOKEN_VAR = 'JOBLINE_STEP_TOKEN';
export const STEP_GATE_VAR = 'JOBLINE_STEP_GATE';
/** The file, in the gate folder, whose appearance lets the script go on after step n's outputs were collected. */
export const stepGateFile = (token: string, step: number): string => `.jobline-step-${token}.${step}`;
/** The byte that opens a step boundary frame: RS, then the token, a space, `S <n>` or `E <n> <exit code>`, a newline. */
export const STEP_FRAME_BYTE = 0x1e;

/**
 * One POSIX shell script running each step in its own `/bin/sh -c` (so a step's `exit` or
 * syntax error ends only that step), in order, stopping at the first failure of a step not
 * marked continueOnFailure with that step's exit code; a continueOnFailure step's failure lets
 * the next steps run and does not fail the job.
 *
 * With a token in JOBLINE_STEP_TOKEN (the executor draws one per attempt), each step is
 * framed by `\x1e<token> S <n>` before it and `\x1e<token> E <n> <code>` after it, written to
 * stdout and to stderr: the executor's StepTracker takes the frames out of the log, writes
 * the `==> [n/N] name` marker in their place (before the step's output on both streams) and
 * records the step. The token is removed from the environment before any step runs, so a
 * step's output cannot forge a boundary. After a step with `outputs`, given a gate folder in
 * JOBLINE_STEP_GATE, the script waits (up to 5 minutes) until the executor has collected them
 * and created the gate file (stepGateFile). Without a token (the script run by hand, an older
 * executor) it prints the marker itself on stderr.
 */
export function stepsScript(steps: NonNullable<JobSpec['steps']>): string {
  const n = steps.length;
  const lines: string[] = [
    `jl_t=\${${STEP_TOKEN_VAR}-}; jl_g=\${${STEP_GATE_VAR}-}; unset ${STEP_TOKEN_VAR} ${STEP_GATE_VAR}`,
    `jl_mark() { [ -n "$jl_t" ] || return 0; printf '\\036%s %s\\n' "$jl_t" "$1"; printf '\\036%s %s\\n' "$jl_t" "$1" >&2; }`,
    `jl_wait() { [ -n "$jl_t" ] && [ -n "$jl_g" ] || return 0; jl_f="$jl_g/.jobline-step-$jl_t.$1"; jl_n=0; while [ ! -e "$jl_f" ] && [ "$jl_n" -lt 3000 ]; do sleep 0.1; jl_n=$((jl_n + 1)); done; rm -f "$jl_f"; }`,
  ];
  steps.forEach((step, i) => {
    const k = i + 1;
    lines.push(`[ -n "$jl_t" ] || printf '%s\\n' ${shellQuote(`==> [${k}/${n}] ${step.name}`)} >&2`);
    lines.push(`jl_mark 'S ${k}'`);
    lines.push(`/bin/sh -c ${shellQuote(step.run)}; jl_s=$?`);
    lines.push(`jl_mark "E ${k} $jl_s"`);
    if (step.outputs?.length) lines.push(`jl_wait ${k}`);
    if (!step.continueOnFailure) lines.push(`[ "$jl_s" -eq 0 ] || exit "$jl_s"`);
  });
  lines.push('exit 0');
  return lines.join('\n') + '\n';
}

/** Single-quotes a string for a POSIX shell: nothing inside is interpreted. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
