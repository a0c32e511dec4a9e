import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { jobStreamName } from '../../../libs/contracts/src';
import { openEventStore, verifyStore, verifyStream, type ChainVerification } from '../../../libs/event-store/src';

export interface VerifyOptions {
  /** The data folder of `jobline dev` (its events.db), used when `store` is `sqlite`. */
  dataDir: string;
  /** `sqlite` (default) or a JOBLINE_EVENT_STORE URL (postgres://…, kurrentdb://…). */
  store?: string;
  /** Only this job's stream. */
  job?: string;
}

/**
 * Recomputes the hash chain of the store (or one job): the answer names the first position
 * where an event was edited, removed, inserted or reordered.
 */
export async function verify(o: VerifyOptions): Promise<ChainVerification> {
  const spec = o.store ?? 'sqlite';
  const dataDir = resolve(o.dataDir);
  // Opening a missing SQLite file would create an empty store and call it intact.
  if (spec === 'sqlite' && !existsSync(join(dataDir, 'events.db'))) {
    throw new Error(`no event store at ${join(dataDir, 'events.db')} (run \`jobline dev\` first, or pass --data-dir or --store)`);
  }
  const opened = openEventStore(spec, dataDir);
  try {
    return o.job ? await verifyStream(opened.eventStore, jobStreamName(o.job.toLowerCase())) : await verifyStore(opened.eventStore);
  } finally {
    await opened.close();
  }
}

export function formatVerification(result: ChainVerification, scope: string): string {
  const unchained = result.unchained > 0 ? ` (${result.unchained} recorded before the chain existed: unchained, not proven)` : '';
  if (result.intact) {
    return `${scope}: intact, ${result.events} events verified up to position ${result.headPosition}${unchained}\n` + (result.chainHash ? `chain head ${result.chainHash}\n` : '');
  }
  const p = result.problem!;
  return `${scope}: TAMPERED at position ${p.position} (${p.kind})\n  ${p.message}\n${result.events} events verified before it${unchained}\n`;
}
