/**
 * The one port every event store adapter implements (SQLite embedded, EventStoreDB in
 * production). Positions are global and strictly increasing across all streams; stream
 * revisions start at 0 for a stream's first event.
 */
import type { EventChainLink } from './event-chain';

export type ExpectedRevision =
  /** The stream must not exist yet. */
  | 'no_stream'
  /** Append whatever the stream holds. */
  | 'any'
  /** The stream's last revision must be exactly this. */
  | number;

export interface NewEvent {
  /** Unique id (UUID); a retried append with the same ids is not duplicated by adapters that dedupe. */
  id: string;
  type: string;
  data: unknown;
  metadata: Record<string, unknown>;
}

export interface RecordedEvent {
  id: string;
  streamId: string;
  /** 0-based position within the stream. */
  revision: number;
  /** Global position in the store's log; strictly increasing in append order. */
  position: number;
  type: string;
  data: unknown;
  metadata: Record<string, unknown>;
  /** When the store recorded it (ISO-8601). */
  recordedAt: string;
  /**
   * Its links in the tamper-evident hash chain (see event-chain.ts), set by the adapter in
   * the append itself; absent for events recorded before the chain existed. On a store whose
   * global chain is computed (EventStoreDB) only `streamHash` is stored.
   */
  chain?: EventChainLink;
}

export interface AppendResult {
  /** Revision of the last event written (the next expected revision). */
  nextExpectedRevision: number;
  /** Global position of the last event written. */
  position: number;
}

export interface ReadAllOptions {
  /** Exclusive: events with position > fromPosition. Use -1 (or omit) for the start. */
  after?: number;
  maxCount?: number;
}

export interface Subscription extends AsyncIterable<RecordedEvent> {
  close(): Promise<void>;
}

/**
 * Where the log's chain (`chainHash`) comes from: `stored` — the adapter links each event to
 * the log's previous one in the append (SQLite, PostgreSQL); `computed` — the store orders
 * the log itself (EventStoreDB's $all), so only stream links are stored and the log's chain
 * is folded over the log in position order (`foldChainHead`), by the verifier and by the
 * orchestrator's signed checkpoints.
 */
export type GlobalChain = 'stored' | 'computed';

export interface EventStore {
  /** How the log's hash chain is kept (see GlobalChain). */
  readonly globalChain: GlobalChain;
  /** Atomically appends all events, or throws WrongExpectedRevisionError and writes nothing. */
  appendToStream(streamId: string, events: NewEvent[], expected: ExpectedRevision): Promise<AppendResult>;
  /** Every event of a stream in revision order; [] when the stream does not exist. */
  readStream(streamId: string): Promise<RecordedEvent[]>;
  /** Events of all streams in position order, after a position, up to maxCount. */
  readAll(options?: ReadAllOptions): Promise<RecordedEvent[]>;
  /** Catch-up subscription: every event after `after`, then live ones as they are appended, in order. */
  subscribeToAll(options?: { after?: number }): Subscription;
  /** Position of the newest event, -1 when empty. */
  headPosition(): Promise<number>;
  /**
   * The position of the newest event the store had recorded at `instant` (its recordedAt, to
   * the millisecond, at or before it); -1 when it held none yet. The log up to that position is
   * the store as it stood then. Adapters take recorded times under their append lock, so they
   * do not decrease along positions (unless the store's clock is stepped back: then this is
   * one position where they cross `instant`).
   */
  positionAt(instant: Date): Promise<number>;
  close(): Promise<void>;
}

export class WrongExpectedRevisionError extends Error {
  readonly code = 'wrong_expected_revision';
  constructor(
    readonly streamId: string,
    readonly expected: ExpectedRevision,
    readonly actual: number | 'no_stream',
  ) {
    super(`stream ${streamId}: expected revision ${String(expected)}, actual ${String(actual)}`);
    this.name = 'WrongExpectedRevisionError';
  }
}

/** Where a consumer of the store (projection, relay) has got to. */
export interface CheckpointStore {
  /** The saved position, or -1 (before the first event) when none was saved. */
  load(name: string): Promise<number>;
  /** Overwrites the saved position (lower too: a rebuild starts again from -1). */
  save(name: string, position: number): Promise<void>;
}

/** A folded state as of a store position, saved under a key. */
export interface Snapshot<T = unknown> {
  /** The position of the last event folded into `state`. */
  position: number;
  /** Any JSON value; it comes back as JSON.parse(JSON.stringify(state)). */
  state: T;
  /** When it was saved (ISO-8601). */
  savedAt: string;
}

/**
 * Key → snapshot, so a consumer can start from a fold instead of position 0. Several
 * instances may save under one key: a save never replaces a snapshot of a later position.
 */
export interface SnapshotStore {
  /** The snapshot saved under `key`, or undefined. */
  load<T = unknown>(key: string): Promise<Snapshot<T> | undefined>;
  /**
   * Saves `state` as of `position`, unless the snapshot under `key` is of a later position
   * (another instance got further). Resolves true when saved.
   */
  save(key: string, position: number, state: unknown): Promise<boolean>;
  /** Removes the snapshot under `key` (e.g. before a rebuild); nothing when there is none. */
  delete(key: string): Promise<void>;
}
