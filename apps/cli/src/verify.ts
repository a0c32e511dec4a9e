import { createHash, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { jobStreamName } from '../../../libs/contracts/src';
import { ChainCheckpointSchema } from '../../../libs/contracts/src/messages';
import { loadPublicKey, openEventStore, verifyEnvelope, type EnvelopeVerification, trustedHeads, verifyStore, verifyStream, type ChainCheckpoint, type ChainVerification } from '../../../libs/event-store/src';

export interface VerifyOptions {
  /** The data folder of `jobline dev` (its events.db), used when `store` is `sqlite`. */
  dataDir: string;
  /** `sqlite` (default) or a JOBLINE_EVENT_STORE URL (postgres://…, kurrentdb://…). */
  store?: string;
  /** Only this job's stream. */
  job?: string;
  /** Public keys (PEM) whose checkpoints are trusted; default: the public half of `signingKeyFile` when it exists. */
  publicKeys?: string[];
  /** The orchestrator's key file (JOBLINE_SIGNING_KEY_FILE; default <data dir>/signing-key.pem). */
  signingKeyFile?: string;
  /** Checkpoint files the auditor kept (one JSON checkpoint, or an array): trusted like stored ones, and they survive a wiped store. */
  checkpointFiles?: string[];
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
  const keys = trustedKeys(o, dataDir);
  const held = (o.checkpointFiles ?? []).flatMap(readCheckpoints);
  const opened = openEventStore(spec, dataDir);
  try {
    if (o.job) return await verifyStream(opened.eventStore, jobStreamName(o.job.toLowerCase()));
    const stored = (await opened.chainCheckpoints?.list()) ?? [];
    const { trusted, untrusted } = trustedHeads([...stored, ...held], keys);
    const heldForged = held.length - trustedHeads(held, keys).trusted.length;
    if (heldForged > 0) throw new Error(`${heldForged} of the checkpoint files given is not signed by a trusted key (pass its --public-key)`);
    return { ...(await verifyStore(opened.eventStore, { trusted })), checkpointsIgnored: untrusted };
  } finally {
    await opened.close();
  }
}

function trustedKeys(o: VerifyOptions, dataDir: string): KeyObject[] {
  if (o.publicKeys && o.publicKeys.length > 0) return o.publicKeys.map((p) => loadPublicKey(resolve(p)));
  const own = resolve(o.signingKeyFile ?? join(dataDir, 'signing-key.pem'));
  return existsSync(own) ? [loadPublicKey(own)] : [];
}

function readCheckpoints(path: string): ChainCheckpoint[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new Error(`checkpoint file ${path}: ${(error as Error).message}`, { cause: error });
  }
  return (Array.isArray(parsed) ? parsed : [parsed]).map((c, i) => {
    const r = ChainCheckpointSchema.safeParse(c);
    if (!r.success) throw new Error(`checkpoint file ${path}${Array.isArray(parsed) ? ` [${i}]` : ''} is not a chain checkpoint: ${r.error.issues[0]?.message ?? 'invalid'}`);
    return r.data;
  });
}

export function formatVerification(result: ChainVerification, scope: string): string {
  const unchained = result.unchained > 0 ? ` (${result.unchained} recorded before the chain existed: unchained, not proven)` : '';
  const checkpoints = result.checkpointsMatched + result.checkpointsIgnored > 0
    ? `signed checkpoints: ${result.checkpointsMatched} matched${result.checkpointsIgnored ? `, ${result.checkpointsIgnored} ignored (no trusted key)` : ''}\n`
    : '';
  if (result.intact) {
    return `${scope}: intact, ${result.events} events verified up to position ${result.headPosition}${unchained}\n` + (result.chainHash ? `chain head ${result.chainHash}\n` : '') + checkpoints;
  }
  const p = result.problem!;
  return `${scope}: TAMPERED at position ${p.position} (${p.kind})\n  ${p.message}\n${result.events} events verified before it${unchained}\n`;
}

/**
 * Offline check of a downloaded attestation (GET /v1/jobs/{id}/attestation): the DSSE
 * signature by one of the public keys, and with `files`, that each file's sha256 is one of
 * the statement's subjects (e.g. the artifacts tar.gz as downloaded). Throws only when a
 * file cannot be read; a bad envelope is `{ok: false, reason}`.
 */
export function verifyAttestationFile(path: string, publicKeyFiles: string[], files: string[] = []): EnvelopeVerification {
  let envelope: unknown;
  try {
    envelope = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new Error(`attestation file ${path}: ${(error as Error).message}`, { cause: error });
  }
  const result = verifyEnvelope(envelope, publicKeyFiles.map((p) => loadPublicKey(resolve(p))));
  if (!result.ok) return result;
  for (const f of files) {
    const sha256 = createHash('sha256').update(readFileSync(f)).digest('hex');
    if (!result.statement.subject.some((s) => s.digest.sha256 === sha256)) {
      return { ok: false, reason: `${f} (sha256 ${sha256}) is none of the attested subjects` };
    }
  }
  return result;
}

export function formatAttestation(result: EnvelopeVerification, path: string): string {
  if (!result.ok) return `attestation ${path}: NOT VERIFIED: ${result.reason}\n`;
  const subjects = result.statement.subject.map((s) => `  ${s.name} sha256:${s.digest.sha256}\n`).join('');
  return `attestation ${path}: signature verified (key ${result.keyid})\npredicate ${result.statement.predicateType}\nsubjects:\n${subjects}`;
}
