import type { JobSpec, LogStream, StepFinishedData, StepStartedData } from '../../../../libs/contracts/src';
import { STEP_FRAME_BYTE } from '../../../../libs/contracts/src/shell-script';

/**
 * Staged pipelines (README "Staged pipelines"): reads the boundary frames the steps script
 * writes (libs/contracts shell-script.ts), takes them out of the output, writes the
 * `==> [n/N] name` marker into the log in their place and tells what each step did.
 * Runtime-neutral: bytes in, bytes and callbacks out.
 *
 * A frame is written to stdout and then to stderr; the two pipes are read apart, so a frame
 * is applied once both streams have reached it (or ended). Output that follows a frame on one
 * stream waits until then, so the marker stands after everything of the step before and
 * before everything of its own step, on both streams. Only a frame carrying this attempt's
 * token counts; anything else, however it looks, is output.
 */

/** A fresh token per attempt: 128 random bits as hex (Web Crypto, Node and Deno alike). */
export function stepToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
}

export interface StepTrackerOptions {
  steps: NonNullable<JobSpec['steps']>;
  attempt: number;
  token: string;
  /** Writes output (and markers) to the log; may return a promise to wait for (back-pressure). */
  write(stream: LogStream, data: Uint8Array): Promise<void> | void;
  /** Emits what the log holds back and returns its length so far (the next byte's offset): see LogBatcher.cut. */
  cut(): number;
  clock(): Date;
  onStarted(step: StepStartedData): Promise<void> | void;
  /**
   * Called when a step's end frame is applied, before the output after it is written. The
   * returned artifacts, if any, are part of its result (collection happens here, while the
   * script waits at its gate).
   */
  onEnded(step: StepFinishedData): Promise<StepFinishedData> | StepFinishedData;
}

type Frame = { kind: 'S'; step: number } | { kind: 'E'; step: number; exitCode: number };
type Item = Uint8Array | Frame;

const NEWLINE = 0x0a;
/** Longest frame body after the token (` E 100 255`, with room). */
const MAX_FRAME_TAIL = 64;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class StepTracker {
  private readonly prefix: Uint8Array;
  private readonly queues: Record<LogStream, Item[]> = { stdout: [], stderr: [] };
  private readonly carry: Record<LogStream, Uint8Array> = { stdout: new Uint8Array(0), stderr: new Uint8Array(0) };
  private readonly ended: Record<LogStream, boolean> = { stdout: false, stderr: false };
  private readonly results: StepFinishedData[] = [];
  private running: (StepStartedData & { at: number }) | null = null;
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly o: StepTrackerOptions) {
    this.prefix = encoder.encode(`\u001e${o.token} `);
  }

  /** Output read from one stream; resolves once what can be written of it is written. */
  feed(stream: LogStream, data: Uint8Array): Promise<void> {
    this.split(stream, data);
    return this.drain();
  }

  /** The stream ended: what it held back is output, and frames no longer wait for it. */
  end(stream: LogStream): Promise<void> {
    if (this.carry[stream].length) this.queues[stream].push(this.carry[stream]);
    this.carry[stream] = new Uint8Array(0);
    this.ended[stream] = true;
    return this.drain();
  }

  /**
   * The attempt's process is gone (both streams ended): a step still running was cut short and
   * gets the attempt's exit code. Returns every step result of the attempt, in order.
   */
  async finish(exitCode: number): Promise<StepFinishedData[]> {
    await this.end('stdout');
    await this.end('stderr');
    await this.chain;
    if (this.running) {
      const r = this.running;
      this.running = null;
      const now = this.o.clock();
      const result = await this.o.onEnded(this.finished(r, exitCode, now, true));
      this.results.push(result);
    }
    return [...this.results];
  }

  /** The results so far. */
  get steps(): readonly StepFinishedData[] {
    return this.results;
  }

  private split(stream: LogStream, data: Uint8Array): void {
    const buf = concat(this.carry[stream], data);
    const q = this.queues[stream];
    let from = 0;
    let i = buf.indexOf(STEP_FRAME_BYTE, from);
    while (i !== -1) {
      const match = prefixMatch(buf, i, this.prefix);
      if (match === 'partial') break;
      if (match === 'yes') {
        const nl = buf.indexOf(NEWLINE, i + this.prefix.length);
        if (nl === -1 && buf.length - i - this.prefix.length <= MAX_FRAME_TAIL) break;
        const frame = nl === -1 ? null : parseFrame(decoder.decode(buf.subarray(i + this.prefix.length, nl)));
        if (frame) {
          if (i > from) q.push(buf.slice(from, i));
          q.push(frame);
          from = nl + 1;
          i = buf.indexOf(STEP_FRAME_BYTE, from);
          continue;
        }
      }
      i = buf.indexOf(STEP_FRAME_BYTE, i + 1);
    }
    // From an RS that may begin a frame on: held until the next read (or the stream's end).
    const holdFrom = i === -1 ? buf.length : i;
    if (holdFrom > from) q.push(buf.slice(from, holdFrom));
    this.carry[stream] = buf.slice(holdFrom);
  }

  private drain(): Promise<void> {
    this.chain = this.chain.then(() => this.step());
    return this.chain;
  }

  private async step(): Promise<void> {
    for (;;) {
      let progressed = false;
      for (const s of ['stdout', 'stderr'] as const) {
        const q = this.queues[s];
        while (q.length && q[0] instanceof Uint8Array) {
          await this.o.write(s, q.shift() as Uint8Array);
          progressed = true;
        }
      }
      const heads = (['stdout', 'stderr'] as const).map((s) => this.queues[s][0] as Frame | undefined);
      const ready = (['stdout', 'stderr'] as const).every((s, k) => heads[k] !== undefined || this.ended[s]);
      const frame = heads[0] ?? heads[1];
      if (frame && ready) {
        for (const s of ['stdout', 'stderr'] as const) if (this.queues[s].length) this.queues[s].shift();
        await this.apply(frame);
        progressed = true;
      }
      if (!progressed) return;
    }
  }

  private async apply(frame: Frame): Promise<void> {
    const spec = this.o.steps[frame.step - 1];
    if (!spec) return;
    const now = this.o.clock();
    if (frame.kind === 'S') {
      if (this.running || this.results.some((r) => r.step === frame.step)) return;
      const logOffset = this.o.cut();
      await this.o.write('stderr', encoder.encode(`==> [${frame.step}/${this.o.steps.length}] ${spec.name}\n`));
      this.o.cut();
      const started: StepStartedData = { attempt: this.o.attempt, step: frame.step, name: spec.name, startedAt: now.toISOString(), logOffset };
      this.running = { ...started, at: now.getTime() };
      await this.o.onStarted(started);
      return;
    }
    const r = this.running;
    if (!r || r.step !== frame.step) return;
    this.running = null;
    this.results.push(await this.o.onEnded(this.finished(r, frame.exitCode, now, false)));
  }

  private finished(r: StepStartedData & { at: number }, exitCode: number, now: Date, interrupted: boolean): StepFinishedData {
    const spec = this.o.steps[r.step - 1];
    return {
      attempt: r.attempt,
      step: r.step,
      name: r.name,
      exitCode,
      startedAt: r.startedAt,
      finishedAt: now.toISOString(),
      durationMs: Math.max(0, now.getTime() - r.at),
      logOffset: r.logOffset,
      logEnd: this.o.cut(),
      continueOnFailure: spec?.continueOnFailure ?? false,
      ...(interrupted ? { interrupted: true } : {}),
    };
  }
}

function parseFrame(text: string): Frame | null {
  let m = /^S ([1-9][0-9]{0,3})$/.exec(text);
  if (m) return { kind: 'S', step: Number(m[1]) };
  m = /^E ([1-9][0-9]{0,3}) ([0-9]{1,3})$/.exec(text);
  if (m) return { kind: 'E', step: Number(m[1]), exitCode: Number(m[2]) };
  return null;
}

/** Whether buf at i starts with prefix: yes, no, or partial (buf ends before it can tell). */
function prefixMatch(buf: Uint8Array, i: number, prefix: Uint8Array): 'yes' | 'no' | 'partial' {
  for (let k = 0; k < prefix.length; k++) {
    if (i + k >= buf.length) return 'partial';
    if (buf[i + k] !== prefix[k]) return 'no';
  }
  return 'yes';
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
