import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';

/**
 * The hash chain that makes the stored history tamper-evident. Every event gets two links,
 * computed by the store adapter inside its append transaction, under the lock that orders
 * appends (so no caller can append an unhashed or wrongly linked event through the port):
 *
 *   content    = sha256(RFC 8785 canonical JSON of {id, streamId, type, data, metadata})
 *   streamHash = sha256(prevStreamHash ":" revision ":" content)   — per stream (job)
 *   chainHash  = sha256(prevChainHash ":" position ":" streamHash)   — over the whole log
 *
 * All hashes are lowercase hex; a "prev" is the link of the stream's previous event (resp.
 * the log's previous event), or "" for the first one or when that one predates the chain.
 * Events recorded before the chain existed carry no links and verify as unchained.
 * PostgreSQL computes the two links in its append function with the same formula.
 *
 * EventStoreDB assigns $all positions in the server, so no appender knows its predecessor in
 * the log: there the stream link is stored (in the event's metadata, see esdb.chain.ts) and
 * the log's chain is computed by folding `advanceChainHead` over $all (EventStore.globalChain
 * is 'computed'); its events carry no `chainHash`.
 */
export interface EventChainLink {
  streamHash: string;
  /** Absent on a store whose global chain is computed, not stored (EventStoreDB). */
  chainHash?: string;
}

/** The link before the first chained event. */
export const CHAIN_GENESIS = '';

export interface HashedContent {
  id: string;
  streamId: string;
  type: string;
  data: unknown;
  metadata: Record<string, unknown>;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** Hash of an event's canonical bytes (data and metadata as stored: JSON values). */
export function contentHash(event: HashedContent): string {
  const canonical = canonicalize({ id: event.id, streamId: event.streamId, type: event.type, data: event.data, metadata: event.metadata });
  if (canonical === undefined) throw new Error(`event ${event.id} has no canonical JSON form`);
  return sha256Hex(canonical);
}

export function streamLink(prevStreamHash: string | null | undefined, revision: number, content: string): string {
  return sha256Hex(`${prevStreamHash ?? CHAIN_GENESIS}:${revision}:${content}`);
}

export function chainLink(prevChainHash: string | null | undefined, position: number, streamHash: string): string {
  return sha256Hex(`${prevChainHash ?? CHAIN_GENESIS}:${position}:${streamHash}`);
}
