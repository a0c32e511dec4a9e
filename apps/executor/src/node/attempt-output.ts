import type { Readable } from 'node:stream';

/**
 * The stdout and stderr pipes of an attempt's main process, as the core reads them. After the
 * process exits, a pipe that stays open (a background child holding it) with nothing
 * buffered and nothing read for drainMs is cut, so it cannot keep the attempt alive.
 */
export class AttemptOutput {
  readonly stdout: AsyncIterable<Uint8Array>;
  readonly stderr: AsyncIterable<Uint8Array>;
  private lastRead = 0;

  constructor(
    private readonly pipes: { stdout: Readable; stderr: Readable },
    private readonly drainMs: number,
  ) {
    this.stdout = this.track(pipes.stdout);
    this.stderr = this.track(pipes.stderr);
  }

  /** Call once the main process has exited. */
  cutWhenQuiet(): void {
    this.drain(this.pipes.stdout);
    this.drain(this.pipes.stderr);
  }

  private drain(s: Readable): void {
    if (s.readableEnded || s.destroyed) return;
    const check = () => {
      if (s.readableEnded || s.destroyed) return;
      const quietFor = performance.now() - this.lastRead;
      if (s.readableLength > 0 || quietFor < this.drainMs) {
        setTimeout(check, Math.max(10, this.drainMs - quietFor));
        return;
      }
      s.destroy();
    };
    setTimeout(check, this.drainMs);
  }

  private async *track(s: Readable): AsyncIterable<Uint8Array> {
    try {
      for await (const chunk of s) {
        this.lastRead = performance.now();
        yield chunk as Uint8Array;
      }
    } catch {
      // destroy() by drain(): the output ends here.
    }
  }
}
