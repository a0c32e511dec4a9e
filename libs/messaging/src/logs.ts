import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { STREAMS, decodeLogChunk, subjects, type LogChunk } from '../../contracts/src';

// The chunk codec lives in the contracts (one codec for executors and readers); re-exported for existing callers.
export { decodeLogChunk, encodeLogChunk, type EncodedLogChunk, type LogMessage } from '../../contracts/src';

/** A chunk as read back from the logs stream, with its stream sequence (to resume a read after it). */
export interface SequencedLogChunk extends LogChunk {
  seq: number;
}

export interface ReadLogChunksOptions {
  /** Keep delivering live chunks until `signal` aborts (default false: end after what exists now). */
  follow?: boolean;
  signal?: AbortSignal;
  /** Stream sequence to start from (default: the first chunk of the job still in the stream). */
  startSeq?: number;
  /**
   * Messages requested from the server at a time (default 256). The client asks for more
   * only as chunks are taken from the iterator, so memory stays bounded however long the log.
   */
  batch?: number;
}

/**
 * A job's log chunks in stream order, through an ordered (ephemeral, client-checked)
 * consumer filtered on the job's single subject, so it works on nats-server 2.9.
 * Without follow it ends once it has delivered every chunk that existed when it started;
 * with follow it ends when the signal aborts (or the consumer of the iterable stops).
 * Malformed messages are skipped.
 */
export async function* readLogChunks(js: JetStreamClient, jobId: string, opts: ReadLogChunksOptions = {}): AsyncGenerator<SequencedLogChunk> {
  const { follow = false, signal, startSeq, batch = 256 } = opts;
  if (signal?.aborted) return;
  const consumer = await js.consumers.get(STREAMS.logs, {
    filter_subjects: subjects.logs(jobId),
    opt_start_seq: startSeq && startSeq > 0 ? startSeq : 1,
  });
  try {
    // Counted at creation, so chunks written while we read do not keep a non-follow read going.
    let remaining = (await consumer.info(true)).num_pending;
    if ((!follow && remaining === 0) || signal?.aborted) return;
    const messages = await consumer.consume({ max_messages: batch });
    const stop = () => void messages.close();
    signal?.addEventListener('abort', stop, { once: true });
    // An abort while consume() was being set up fires no event: without this the read would wait for a next chunk that may never come.
    if (signal?.aborted) stop();
    try {
      for await (const m of messages) {
        remaining--;
        const chunk = decodeLogChunk(m);
        if (chunk) yield { ...chunk, seq: m.seq };
        // pending === 0 also ends a read whose older chunks were purged or aged out meanwhile.
        if (signal?.aborted || (!follow && (remaining <= 0 || m.info.pending === 0))) break;
      }
    } finally {
      signal?.removeEventListener('abort', stop);
      await messages.close();
    }
  } finally {
    // Ordered consumers would linger on the server for their inactive threshold otherwise.
    await consumer.delete().catch(() => undefined);
  }
}

/** Removes every chunk of a job from the logs stream; returns how many were purged. */
export async function purgeLogs(jsm: JetStreamManager, jobId: string): Promise<number> {
  const r = await jsm.streams.purge(STREAMS.logs, { filter: subjects.logs(jobId) });
  return r.purged;
}
