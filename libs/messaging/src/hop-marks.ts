/**
 * Bench-only timestamps of a job's steps through the system (`jobs` benchmark, dev topology:
 * every service in the benchmark's process). Off unless a benchmark installs a recorder: each
 * step then costs one property read. Runtime-neutral (the executor's core imports it).
 */
/** `<service>.<step>`, e.g. `executor.claimSent`; the relay's are `relay.got.<EventType>` (an event read from the store), `relay.out.<EventType>` and `relay.acked.<EventType>`. */
export type HopStep = string;

export const hopMarks: { record: ((jobId: string, step: HopStep) => void) | null } = { record: null };
