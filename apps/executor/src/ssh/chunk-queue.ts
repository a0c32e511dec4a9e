import type { Readable } from 'node:stream';

const HIGH_WATER = 64;

/**
 * A readable's chunks as an async iterable, with back-pressure: the source is paused while
 * more than HIGH_WATER chunks wait, so a fast remote writer cannot fill the executor's memory.
 */
export class ChunkQueue implements AsyncIterable<Uint8Array> {
  private readonly chunks: Uint8Array[] = [];
  private ended = false;
  private wake: (() => void) | null = null;
  private source: Readable | null = null;

  attach(source: Readable): void {
    this.source = source;
    source.on('data', (d: Buffer) => this.push(d));
    source.on('end', () => this.end());
    source.on('close', () => this.end());
    source.on('error', () => this.end());
  }

  push(chunk: Uint8Array): void {
    if (this.ended || chunk.length === 0) return;
    this.chunks.push(chunk);
    if (this.chunks.length > HIGH_WATER) this.source?.pause();
    this.signal();
  }

  /** The chunks not read yet. */
  pending(): Uint8Array[] {
    return [...this.chunks];
  }

  end(): void {
    this.ended = true;
    this.signal();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      const c = this.chunks.shift();
      if (c) {
        if (this.chunks.length <= HIGH_WATER / 2 && this.source?.isPaused()) this.source.resume();
        yield c;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private signal(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}
