import type { LogStream } from '../../../../libs/contracts/src';

/** Bytes ready to send, in log order. */
export interface LogPiece {
  stream: LogStream;
  /** Offset of data's first byte in the attempt's combined output. */
  offset: number;
  data: Uint8Array;
}

interface Chunk {
  stream: LogStream;
  offset: number;
  data: Uint8Array;
}

/**
 * Puts one attempt's chunks back in offset order. Offsets count stdout and stderr
 * together (see the executor's LogBatcher), so each byte of the attempt has one offset;
 * a chunk whose publish was retried can be stored after a later one, and is held here
 * until the gap before it is filled. Starts at `from` (a chunk straddling it is cut).
 * A gap that stays open while more than `maxHeld` chunks wait (the chunk is gone:
 * retention, a failed publish) is skipped rather than stalling the log.
 */
export class LogAssembler {
  private next: number;
  private readonly held = new Map<number, Chunk>();

  constructor(
    from = 0,
    private readonly maxHeld = 64,
  ) {
    this.next = from;
  }

  /** The offset of the next byte to deliver. */
  get position(): number {
    return this.next;
  }

  push(chunk: Chunk): LogPiece[] {
    const out: LogPiece[] = [];
    if (chunk.offset + chunk.data.length <= this.next) return out;
    if (chunk.offset > this.next) {
      if (!this.held.has(chunk.offset)) this.held.set(chunk.offset, chunk);
      if (this.held.size > this.maxHeld) this.skipGap(out);
      return out;
    }
    this.take(chunk, out);
    this.release(out);
    return out;
  }

  /** Everything still held, in offset order, skipping the gaps (the end of the log). */
  flush(): LogPiece[] {
    const out: LogPiece[] = [];
    while (this.held.size > 0) this.skipGap(out);
    return out;
  }

  private take(chunk: Chunk, out: LogPiece[]): void {
    const skip = this.next - chunk.offset;
    out.push({ stream: chunk.stream, offset: chunk.offset + Math.max(0, skip), data: skip > 0 ? chunk.data.subarray(skip) : chunk.data });
    this.next = chunk.offset + chunk.data.length;
  }

  /** Delivers held chunks that the position has reached. */
  private release(out: LogPiece[]): void {
    let progressed = true;
    while (progressed && this.held.size > 0) {
      progressed = false;
      for (const [offset, c] of this.held) {
        if (offset + c.data.length <= this.next) {
          this.held.delete(offset);
        } else if (offset <= this.next) {
          this.held.delete(offset);
          this.take(c, out);
          progressed = true;
        }
      }
    }
  }

  private skipGap(out: LogPiece[]): void {
    let min = Infinity;
    for (const offset of this.held.keys()) if (offset < min) min = offset;
    if (min === Infinity) return;
    if (min > this.next) this.next = min;
    this.release(out);
  }
}
