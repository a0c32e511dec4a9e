import { CHAIN_GENESIS, chainLink, contentHash, streamLink, type EventChainLink } from './event-chain';
import type { EventStore, NewEvent, RecordedEvent } from './event-store.port';

/*
 * The hash chain where the store, not the appender, orders the log (EventStoreDB's $all):
 *
 * - Stream links are stored. An append names its expected revision, so the stream's previous
 *   event is known and the adapter puts `streamHash` (event-chain.ts' formula) in the event's
 *   metadata under `$chain`; a read takes it out again, so `metadata` reads back as appended
 *   and the content hash covers exactly what the caller wrote.
 * - The log's chain is computed: `advanceChainHead` folds each event, in position order, into
 *   the head with the same formula the stored chain uses,
 *       head' = sha256(head ":" position ":" streamHash)
 *   and the orchestrator signs that head at a position (a checkpoint). An event recorded before
 *   the chain existed folds in with the link its content would have from the stream's start,
 *   so a checkpoint covers it too.
 */

/** The metadata key under which an EventStoreDB event keeps its stream link. */
export const CHAIN_METADATA_KEY = '$chain';

/** A chain head: the log up to `position` folds to `chainHash` (position -1: the empty log). */
export interface ChainHead {
  position: number;
  chainHash: string;
}

/** The head of an empty log. */
export const GENESIS_HEAD: ChainHead = Object.freeze({ position: -1, chainHash: CHAIN_GENESIS });

const HASH = /^[0-9a-f]{64}$/;

/** The link an event contributes to the log's chain: its stored stream link, or (recorded before the chain) its content's link from genesis. */
export function logLinkOf(event: RecordedEvent): string {
  return event.chain?.streamHash ?? streamLink(CHAIN_GENESIS, event.revision, contentHash(event));
}

/** The head after `event`, the next event of the log after `head`. */
export function advanceChainHead(head: string, event: RecordedEvent): string {
  return chainLink(head, event.position, logLinkOf(event));
}

/** Folds `events` (in position order, all of them after `from`) into the head. */
export function foldChainHead(events: Iterable<RecordedEvent>, from: ChainHead = GENESIS_HEAD): ChainHead {
  let head = from;
  for (const event of events) {
    if (event.position <= head.position) throw new Error(`foldChainHead: position ${event.position} does not follow ${head.position}`);
    head = { position: event.position, chainHash: advanceChainHead(head.chainHash, event) };
  }
  return head;
}

/** Reads the store after `from` up to its head (or `until`, inclusive) and folds it. */
export async function readChainHead(store: EventStore, from: ChainHead = GENESIS_HEAD, options: { until?: number; batchSize?: number } = {}): Promise<ChainHead> {
  const batchSize = Math.max(1, options.batchSize ?? 5000);
  const until = options.until ?? Number.POSITIVE_INFINITY;
  let head = from;
  for (;;) {
    const batch = await store.readAll({ after: head.position, maxCount: batchSize });
    const within = batch.filter((e) => e.position <= until);
    head = foldChainHead(within, head);
    if (batch.length < batchSize || within.length < batch.length) return head;
  }
}

/** A value as the store gives it back: JSON, so `undefined` members are gone and dates are strings. */
function asStored(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value ?? null) ?? 'null');
}

/**
 * The events to write after the stream's event `prevStreamHash` (null: none, or one recorded
 * before the chain), the first at revision `firstRevision`: data and metadata as they will
 * read back, metadata with `$chain: {streamHash}`. Throws when a caller's metadata already
 * has `$chain` (a reserved key): nothing may pass for a link.
 */
export function linkNewEvents(streamId: string, events: readonly NewEvent[], firstRevision: number, prevStreamHash: string | null): NewEvent[] {
  let prev = prevStreamHash;
  return events.map((event, i) => {
    const data = asStored(event.data);
    const stored = asStored(event.metadata ?? {});
    const metadata = stored && typeof stored === 'object' && !Array.isArray(stored) ? (stored as Record<string, unknown>) : {};
    if (CHAIN_METADATA_KEY in metadata) throw new Error(`event ${event.id}: metadata key ${JSON.stringify(CHAIN_METADATA_KEY)} is reserved for the hash chain`);
    const streamHash = streamLink(prev, firstRevision + i, contentHash({ id: event.id, streamId, type: event.type, data, metadata }));
    prev = streamHash;
    return { ...event, data, metadata: { ...metadata, [CHAIN_METADATA_KEY]: { streamHash } } };
  });
}

/**
 * The stored metadata split into the caller's metadata and the event's stream link. A `$chain`
 * that is not exactly `{streamHash: <sha256 hex>}` is no link: it stays in the metadata (the
 * event reads as unchained, and is reported if chained events came before it).
 */
export function chainFromMetadata(stored: Record<string, unknown>): { metadata: Record<string, unknown>; chain?: EventChainLink } {
  const link = stored[CHAIN_METADATA_KEY];
  if (!link || typeof link !== 'object' || Array.isArray(link)) return { metadata: stored };
  const keys = Object.keys(link);
  const streamHash = (link as Record<string, unknown>).streamHash;
  if (keys.length !== 1 || typeof streamHash !== 'string' || !HASH.test(streamHash)) return { metadata: stored };
  const { [CHAIN_METADATA_KEY]: _link, ...metadata } = stored;
  return { metadata, chain: { streamHash } };
}
