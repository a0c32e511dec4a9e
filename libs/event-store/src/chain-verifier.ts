import { CHAIN_GENESIS, chainLink, contentHash, streamLink } from './event-chain';
import type { EventStore, RecordedEvent } from './event-store.port';
import { advanceChainHead } from './esdb.chain';

/**
 * What the first break in the chain looks like. `edited`: the event's bytes (or its place
 * in its stream) no longer match its hash; `removed`: events are missing before it;
 * `inserted`: an unlinked event after the chain began; `reordered`: it is out of order in
 * its stream or in the log; `truncated`: the log ends before a signed checkpoint;
 * `checkpoint`: the log differs from a signed checkpoint at or before its position.
 */
export type ChainProblemKind = 'edited' | 'removed' | 'inserted' | 'reordered' | 'truncated' | 'checkpoint';

export interface ChainProblem {
  kind: ChainProblemKind;
  /** The first store position where the history is not what was recorded. */
  position: number;
  streamId?: string;
  revision?: number;
  eventId?: string;
  message: string;
}

/** A chain head the verifier trusts (e.g. a signed checkpoint whose signature it checked). */
export interface TrustedHead {
  position: number;
  chainHash: string;
}

export interface ChainVerification {
  intact: boolean;
  /** Events read (up to the first problem, or all). */
  events: number;
  /** Of those, recorded before the chain existed (no links): not proven, not tampered. */
  unchained: number;
  /** Position and link of the last verified event (-1 / null when none). */
  headPosition: number;
  chainHash: string | null;
  /** Trusted heads that the log matched. */
  checkpointsMatched: number;
  /** Checkpoints not used as trusted heads: signed by no trusted key, or forged. */
  checkpointsIgnored: number;
  problem?: ChainProblem;
}

interface StreamTip {
  revision: number;
  streamHash: string | null;
}

/**
 * Walks the whole log in position order and recomputes every link: the stream link shows an
 * edited, removed (inside a stream) or reordered event; the log link also shows an event
 * removed at the end of a stream, or moved between streams' events; trusted heads show a
 * history rewritten with recomputed hashes, and a truncated tail. Stops at the first problem.
 * On a store whose log chain is computed (EventStoreDB), see `verifyComputedChain`.
 */
export async function verifyStore(
  store: EventStore,
  options: { batchSize?: number; trusted?: readonly TrustedHead[] } = {},
): Promise<ChainVerification> {
  if (store.globalChain === 'computed') return verifyComputedChain(store, options);
  const batchSize = Math.max(1, options.batchSize ?? 5000);
  const trusted = [...(options.trusted ?? [])].sort((a, b) => a.position - b.position);
  let nextTrusted = 0;
  const streams = new Map<string, StreamTip>();
  const result: ChainVerification = { intact: true, events: 0, unchained: 0, headPosition: -1, chainHash: null, checkpointsMatched: 0, checkpointsIgnored: 0 };
  let chained = false;
  const fail = (problem: ChainProblem): ChainVerification => ({ ...result, intact: false, problem });

  for await (const event of readLog(store, batchSize)) {
    const passed = passedTrustedHead(trusted[nextTrusted], event);
    if (passed) return fail(passed);
    const tip = streams.get(event.streamId);
    if (!event.chain) {
      if (chained) {
        return fail({ ...where(event), kind: 'inserted', message: `${describe(event)} carries no chain link, but events before it do: inserted, or its links were stripped` });
      }
      result.unchained += 1;
    } else {
      // The first position that should be there but is not (positions after a removal).
      const gap = result.headPosition >= 0 && event.position > result.headPosition + 1;
      const firstMissing = gap ? result.headPosition + 1 : event.position;
      const outOfOrder = await revisionProblem(store, event, tip, firstMissing);
      if (outOfOrder) return fail(outOfOrder);
      const streamHash = streamLink(tip?.streamHash, event.revision, contentHash(event));
      const chainHash = chainLink(result.chainHash, event.position, streamHash);
      if (streamHash !== event.chain.streamHash) {
        // Its own links still follow from the previous event: the links are the recorded
        // ones and its bytes changed. Otherwise the links were made up: it was put there.
        const edited = chainLink(result.chainHash, event.position, event.chain.streamHash) === event.chain.chainHash;
        return fail({
          ...where(event),
          kind: edited ? 'edited' : 'inserted',
          message: edited
            ? `${describe(event)} does not match its hash: its data, metadata, type or id was changed`
            : `${describe(event)} was not recorded by the store: its links follow from no recorded event (inserted)`,
        });
      }
      if (chainHash !== event.chain.chainHash) {
        return fail(
          gap
            ? { ...where(event), position: firstMissing, kind: 'removed', message: `the event(s) at positions ${firstMissing}..${event.position - 1}, before ${describe(event)}, were removed` }
            : { ...where(event), kind: 'reordered', message: `${describe(event)} is not where it was recorded in the log (moved or reordered)` },
        );
      }
      chained = true;
      result.chainHash = chainHash;
    }
    streams.set(event.streamId, { revision: event.revision, streamHash: event.chain?.streamHash ?? null });
    result.headPosition = event.position;
    result.events += 1;
    if (nextTrusted < trusted.length && trusted[nextTrusted].position === event.position) {
      if (trusted[nextTrusted].chainHash !== result.chainHash) {
        return fail({
          ...where(event),
          kind: 'checkpoint',
          message: `the log up to position ${event.position} differs from the signed checkpoint there: rewritten with recomputed hashes`,
        });
      }
      result.checkpointsMatched += 1;
      nextTrusted += 1;
    }
  }
  const cut = truncatedTail(result.headPosition, trusted.slice(nextTrusted));
  return cut ? fail(cut) : result;
}

/**
 * One stream (job) alone: revisions contiguous from 0 and every stream link. (Its links in
 * the whole log, and a truncated tail, are what `verifyStore` checks.)
 */
export async function verifyStream(store: EventStore, streamId: string): Promise<ChainVerification> {
  const events = await store.readStream(streamId);
  const result: ChainVerification = { intact: true, events: 0, unchained: 0, headPosition: -1, chainHash: null, checkpointsMatched: 0, checkpointsIgnored: 0 };
  let previous: StreamTip | undefined;
  let chained = false;
  for (const event of events) {
    const expectedRevision = previous ? previous.revision + 1 : 0;
    const fail = (kind: ChainProblemKind, message: string): ChainVerification => ({ ...result, intact: false, problem: { ...where(event), kind, message } });
    if (event.revision !== expectedRevision) {
      return fail('removed', `revision ${expectedRevision} of ${streamId} is missing before ${describe(event)}`);
    }
    if (previous && event.position <= result.headPosition) {
      return fail('reordered', `${describe(event)} is recorded before revision ${previous.revision} in the log`);
    }
    if (!event.chain) {
      if (chained) return fail('inserted', `${describe(event)} carries no chain link, but events before it do: inserted, or its links were stripped`);
      result.unchained += 1;
    } else {
      if (streamLink(previous?.streamHash, event.revision, contentHash(event)) !== event.chain.streamHash) {
        return fail('edited', `${describe(event)} does not match its hash: its data, metadata, type or id was changed (or it was put there)`);
      }
      chained = true;
      result.chainHash = event.chain.chainHash ?? null;
    }
    previous = { revision: event.revision, streamHash: event.chain?.streamHash ?? null };
    result.headPosition = event.position;
    result.events += 1;
  }
  return result;
}

/**
 * The log of a store that stores only stream links (EventStoreDB): each stream's links are
 * recomputed as `verifyStore` does (edited, removed inside a stream, reordered inside a
 * stream, inserted without links), and the log's chain is folded in position order
 * (`advanceChainHead`) and compared with every trusted head. With no stored log links, what
 * only the log's order shows — an event removed at the end of its stream, events of two
 * streams swapped, an event added with links made up for a new stream — shows at the first
 * trusted head after it (named at that head's position: exactly the event when checkpoints
 * are dense, else the first checkpoint that no longer matches), and a truncated tail as with
 * stored links. Without trusted heads only the stream links are proven.
 */
export async function verifyComputedChain(
  store: EventStore,
  options: { batchSize?: number; trusted?: readonly TrustedHead[] } = {},
): Promise<ChainVerification> {
  const batchSize = Math.max(1, options.batchSize ?? 5000);
  const trusted = [...(options.trusted ?? [])].sort((a, b) => a.position - b.position);
  let nextTrusted = 0;
  const streams = new Map<string, StreamTip>();
  const result: ChainVerification = { intact: true, events: 0, unchained: 0, headPosition: -1, chainHash: null, checkpointsMatched: 0, checkpointsIgnored: 0 };
  let head = CHAIN_GENESIS;
  let lastMatched: number | undefined;
  let chained = false;
  const fail = (problem: ChainProblem): ChainVerification => ({ ...result, intact: false, problem });
  const since = (): string => (lastMatched === undefined ? 'since the start of the log' : `after position ${lastMatched} (the last signed checkpoint it matched)`);

  for await (const event of readLog(store, batchSize)) {
    const passed = passedTrustedHead(trusted[nextTrusted], event);
    if (passed) return fail(passed);
    const tip = streams.get(event.streamId);
    const outOfOrder = await revisionProblem(store, event, tip, event.position);
    if (outOfOrder) return fail(outOfOrder);
    const next = advanceChainHead(head, event);
    const signedHere = nextTrusted < trusted.length && trusted[nextTrusted].position === event.position ? trusted[nextTrusted] : undefined;
    if (!event.chain) {
      if (chained) {
        return fail({ ...where(event), kind: 'inserted', message: `${describe(event)} carries no chain link, but events before it do: inserted, or its links were stripped` });
      }
      result.unchained += 1;
    } else {
      if (streamLink(tip?.streamHash, event.revision, contentHash(event)) !== event.chain.streamHash) {
        // Its stored link still gives the signed head here: the link is the recorded one and
        // its bytes changed. A signed head it does not give: it was put there. No head here: either.
        const inserted = signedHere !== undefined && signedHere.chainHash !== next;
        return fail({
          ...where(event),
          kind: inserted ? 'inserted' : 'edited',
          message: inserted
            ? `${describe(event)} was not recorded by the store: its link gives no signed head (inserted)`
            : `${describe(event)} does not match its hash: its data, metadata, type or id was changed${signedHere ? '' : ' (or it was put there with a made-up link)'}`,
        });
      }
      chained = true;
    }
    head = next;
    streams.set(event.streamId, { revision: event.revision, streamHash: event.chain?.streamHash ?? null });
    if (signedHere) {
      if (signedHere.chainHash !== head) {
        return fail({
          ...where(event),
          kind: 'checkpoint',
          message: `the log up to position ${event.position} differs from the signed checkpoint there: an event ${since()} was removed, inserted, reordered or rewritten`,
        });
      }
      result.checkpointsMatched += 1;
      lastMatched = event.position;
      nextTrusted += 1;
    }
    result.headPosition = event.position;
    result.chainHash = head;
    result.events += 1;
  }
  const cut = truncatedTail(result.headPosition, trusted.slice(nextTrusted));
  return cut ? fail(cut) : result;
}

/** The whole log in position order, read `batchSize` events at a time. */
async function* readLog(store: EventStore, batchSize: number): AsyncGenerator<RecordedEvent> {
  let after = -1;
  for (;;) {
    const batch = await store.readAll({ after, maxCount: batchSize });
    if (batch.length === 0) return;
    yield* batch;
    after = batch[batch.length - 1].position;
  }
}

/** The next trusted head lies before `event`: the log passed it without reaching it, so that event is gone. */
function passedTrustedHead(next: TrustedHead | undefined, event: RecordedEvent): ChainProblem | null {
  if (!next || next.position >= event.position) return null;
  return { kind: 'removed', position: next.position, message: `the event at position ${next.position}, covered by a signed checkpoint, is missing` };
}

/**
 * `event` is not the next revision of its stream: a later revision first (moved before the
 * missing one, or the missing one removed — reported at `firstMissing`), or an earlier one.
 */
async function revisionProblem(store: EventStore, event: RecordedEvent, tip: StreamTip | undefined, firstMissing: number): Promise<ChainProblem | null> {
  const expectedRevision = tip ? tip.revision + 1 : 0;
  if (event.revision > expectedRevision) {
    const moved = (await store.readStream(event.streamId)).some((e) => e.revision === expectedRevision && e.position > event.position);
    const missing = event.revision - expectedRevision > 1 ? `revisions ${expectedRevision}..${event.revision - 1} are` : `revision ${expectedRevision} is`;
    return moved
      ? { ...where(event), kind: 'reordered', message: `${describe(event)} comes before revision ${expectedRevision} of its stream in the log` }
      : { ...where(event), position: firstMissing, kind: 'removed', message: `${missing} of ${event.streamId} missing before ${describe(event)}` };
  }
  if (event.revision < expectedRevision) {
    return { ...where(event), kind: 'reordered', message: `${describe(event)} comes after revision ${tip?.revision} of its stream in the log` };
  }
  return null;
}

/** The log ended before the signed checkpoints still `unreached`: its tail was removed. */
function truncatedTail(headPosition: number, unreached: readonly { position: number }[]): ChainProblem | null {
  const last = unreached.at(-1);
  if (!last) return null;
  return {
    kind: 'truncated',
    position: headPosition + 1,
    message: `the log ends at position ${headPosition}, but a signed checkpoint covers it up to position ${last.position}: its tail was removed`,
  };
}

function where(event: RecordedEvent): Pick<ChainProblem, 'position' | 'streamId' | 'revision' | 'eventId'> {
  return { position: event.position, streamId: event.streamId, revision: event.revision, eventId: event.id };
}

function describe(event: RecordedEvent): string {
  return `event ${event.id} (${event.type}, ${event.streamId} revision ${event.revision}) at position ${event.position}`;
}
