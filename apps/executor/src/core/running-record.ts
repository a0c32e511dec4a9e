/**
 * running.json: the attempts a runner has started and not yet released, kept in its work
 * root so that a successor — under Node or Deno — can kill and clean up what a crashed
 * executor left. One format for every runtime; each runtime only reads and writes the text.
 */
export const RUNNING_FILE = 'running.json';

/** The environment variable (JOBLINE_ATTEMPT=<attemptId>) that marks every process of an attempt. */
export const ATTEMPT_MARKER = 'JOBLINE_ATTEMPT';

/** An attempt id names its workspace folder and marks its processes. */
export const ATTEMPT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

export interface RunningRecord {
  pgid: number;
  startedAt: string;
}

export function encodeRunningRecords(records: ReadonlyMap<string, RunningRecord>): string {
  return JSON.stringify({ version: 1, attempts: Object.fromEntries(records) });
}

/** The recorded attempts; none for a missing, partial or foreign file (the folders and process markers still find them). */
export function decodeRunningRecords(text: string | null): Record<string, RunningRecord> {
  if (text === null) return {};
  try {
    const parsed = JSON.parse(text) as { attempts?: Record<string, RunningRecord> } | null;
    return parsed?.attempts ?? {};
  } catch {
    return {};
  }
}

/** Whether an entry of the work root is an attempt's workspace (not running.json, its temp files or a cache). */
export function isAttemptEntry(name: string): boolean {
  return name !== RUNNING_FILE && !name.endsWith('.tmp') && ATTEMPT_ID.test(name);
}
