import type { LogStream } from '../../contracts/src';

/** Bytes ready to send, in log order. */
export interface LogPiece {
  stream: LogStream;
  /** Offset of data's first byte in the attempt's combined output. */
  offset: number;
  data: Uint8Array;
}

/**
 * Puts one attempt's chunks back in offset order. Offsets count stdout and stderr
 * together (see the executor's LogBatcher), so each byte of an attempt has one offset; a
 * chunk whose publish was retried can be stored after a later one, and is held here until
 * the gap before it is filled. Starts at `from` (a chunk straddling it is cut); duplicates
 * are dropped. A chunk passed through whole keeps its `data` (the same bytes object), so
 * what an edge derives from it can be shared by every follower.
 *
 * A gap is never skipped here: the reader decides, from the stream and the job's history,
 * whether the missing bytes are late (wait), discarded or never stored (an error).
 */
export class LogAssembler {
  private next: number;
  private readonly held = new Map<number, LogPiece>();
  private heldTotal = 0;

  constructor(from = 0) {
    this.next = from;
  }

  /** The offset of the next byte to deliver: bytes delivered so far, counted from 0. */
  get position(): number {
    return this.next;
  }

  /** Bytes held after a gap. */
  get heldBytes(): number {
    return this.heldTotal;
  }

  /** The first offset held after the gap, or null with no gap. */
  get firstHeldOffset(): number | null {
    let min: number | null = null;
    for (const o of this.held.keys()) if (min === null || o < min) min = o;
    return min;
  }

  push(chunk: LogPiece): LogPiece[] {
    const out: LogPiece[] = [];
    if (chunk.data.length === 0 || chunk.offset + chunk.data.length <= this.next) return out;
    if (chunk.offset > this.next) {
      if (!this.held.has(chunk.offset)) {
        this.held.set(chunk.offset, chunk);
        this.heldTotal += chunk.data.length;
      }
      return out;
    }
    this.take(chunk, out);
    this.release(out);
    return out;
  }

  private take(chunk: LogPiece, out: LogPiece[]): void {
    const skip = this.next - chunk.offset;
    out.push(skip > 0 ? { stream: chunk.stream, offset: this.next, data: chunk.data.subarray(skip) } : chunk);
    this.next = chunk.offset + chunk.data.length;
  }

  /** Delivers held chunks that the position has reached. */
  private release(out: LogPiece[]): void {
    let progressed = true;
    while (progressed && this.held.size > 0) {
      progressed = false;
      for (const [offset, c] of this.held) {
        if (offset > this.next) continue;
        this.held.delete(offset);
        this.heldTotal -= c.data.length;
        if (offset + c.data.length > this.next) {
          this.take(c, out);
          progressed = true;
        }
      }
    }
  }
}
