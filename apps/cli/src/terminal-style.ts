import type { JobStatus } from '../../../libs/contracts/src';

/**
 * Colours for the CLI's human output. Off unless the output is a terminal; NO_COLOR (any
 * non-empty value, https://no-color.org) and TERM=dumb turn them off even there, and
 * FORCE_COLOR (non-empty, not "0") turns them on. `--json` output is never coloured.
 */
export interface Style {
  readonly enabled: boolean;
  status(s: JobStatus | string): string;
  bold(s: string): string;
  dim(s: string): string;
  red(s: string): string;
}

/** Whether to colour a stream: decided once in main from the environment and the stream. */
export function colourWanted(env: Readonly<Record<string, string | undefined>>, isTty: boolean): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '' && env.FORCE_COLOR !== '0') return true;
  if (env.TERM === 'dumb') return false;
  return isTty;
}

const sgr = (open: number, close: number) => (s: string) => `\u001b[${open}m${s}\u001b[${close}m`;
const COLOURS = { green: sgr(32, 39), red: sgr(31, 39), yellow: sgr(33, 39), cyan: sgr(36, 39), bold: sgr(1, 22), dim: sgr(2, 22) };

const STATUS_COLOUR: Record<string, (s: string) => string> = {
  succeeded: COLOURS.green,
  failed: COLOURS.red,
  timed_out: COLOURS.red,
  cancelled: COLOURS.yellow,
  running: COLOURS.cyan,
  queued: COLOURS.dim,
  pending: COLOURS.dim,
};

export function createStyle(enabled: boolean): Style {
  const id = (s: string) => s;
  return {
    enabled,
    // Padding is applied before colouring by callers, so columns stay aligned.
    status: (s) => (enabled ? (STATUS_COLOUR[s.trim()] ?? id)(s) : s),
    bold: enabled ? COLOURS.bold : id,
    dim: enabled ? COLOURS.dim : id,
    red: enabled ? COLOURS.red : id,
  };
}

export const PLAIN: Style = createStyle(false);
