import type { Readable } from 'node:stream';

/** What is known of one pipe while the core reads it. */
interface PipeState {
  /** When the reader last asked for more and got nothing yet (null: it holds a chunk, or took one since). */
  waitingSince: number | null;
  /** Chunks taken so far: a cut is called off when this moved during the last check. */
  taken: number;
}

/**
 * The stdout and stderr pipes of an attempt's main process, as the core reads them. After the
 * process exits, a pipe that stays open (a background child holding it) is cut once it has
 * given nothing for drainMs *while the reader was waiting for it*: time the reader spends on a
 * chunk (the log batcher waiting for JetStream under load) never counts as quiet, and a cut is
 * confirmed after the event loop has polled the pipe once more (a loop busy past drainMs has
 * not read what the pipe holds yet). Never cut while the reader is behind: output is not lost
 * to a slow reader.
 */
export class AttemptOutput {
  readonly stdout: AsyncIterable<Uint8Array>;
  readonly stderr: AsyncIterable<Uint8Array>;
  private readonly state = new Map<Readable, PipeState>();

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

  private pipe(s: Readable): PipeState {
    let st = this.state.get(s);
    if (!st) {
      st = { waitingSince: performance.now(), taken: 0 };
      this.state.set(s, st);
    }
    return st;
  }

  private drain(s: Readable): void {
    const st = this.pipe(s);
    const over = () => s.readableEnded || s.destroyed;
    const check = () => {
      if (over()) return;
      const quietFor = st.waitingSince === null ? 0 : performance.now() - st.waitingSince;
      if (s.readableLength > 0 || quietFor < this.drainMs) {
        setTimeout(check, Math.max(10, this.drainMs - quietFor));
        return;
      }
      // Quiet by the clock; let the loop poll the pipe once more before believing it.
      const taken = st.taken;
      setImmediate(() => {
        if (over()) return;
        if (s.readableLength > 0 || st.taken !== taken || st.waitingSince === null) return void setTimeout(check, this.drainMs);
        s.destroy();
      });
    };
    setTimeout(check, this.drainMs);
  }

  private async *track(s: Readable): AsyncIterable<Uint8Array> {
    const st = this.pipe(s);
    try {
      for await (const chunk of s) {
        st.taken++;
        st.waitingSince = null;
        yield chunk as Uint8Array;
        // The reader asks for the next chunk: from now on, silence is the pipe's.
        st.waitingSince = performance.now();
      }
    } catch {
      // destroy() by drain(): the output ends here.
    }
  }
}
