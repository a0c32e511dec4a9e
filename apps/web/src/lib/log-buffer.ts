/**
 * The live log of one job as the WebSocket delivers it: frames with attempt, stream and
 * byte offset. Kept as lines per attempt, each tagged with its stream, so the view can
 * tell stdout from stderr, search, and resume a dropped follow at the right byte. Pure.
 */

export type LogStream = 'stdout' | 'stderr';

export interface LogFrame {
  attempt: number;
  stream: LogStream;
  offset: number;
  data: string;
  encoding?: 'base64';
}

export interface LogLine {
  attempt: number;
  stream: LogStream;
  /** Byte offset (within the attempt) where the line starts. */
  offset: number;
  text: string;
}

/** Most lines kept in memory; older ones are dropped from the view (the download has everything). */
export const MAX_LINES = 50_000;

const decoder = () => new TextDecoder('utf-8', { fatal: false });

function bytesOf(frame: LogFrame): Uint8Array {
  if (frame.encoding === 'base64') {
    const bin = atob(frame.data);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  return new TextEncoder().encode(frame.data);
}

export class LogBuffer {
  readonly lines: LogLine[] = [];
  /** Lines dropped from the front to stay within MAX_LINES. */
  dropped = 0;
  /** Where a follow resumes: the attempt and byte after the last frame. */
  attempt = 1;
  next = 0;
  /** An unterminated last line per stream (a line may span frames). */
  private readonly partial = new Map<LogStream, { line: LogLine; decoder: TextDecoder }>();

  constructor(private readonly maxLines = MAX_LINES) {}

  /** Adds a frame; frames before the resume point (a repeat after a reconnect) are ignored. Returns false for those. */
  push(frame: LogFrame): boolean {
    if (frame.attempt < this.attempt || (frame.attempt === this.attempt && frame.offset < this.next)) return false;
    if (frame.attempt > this.attempt) {
      this.flush();
      this.attempt = frame.attempt;
      this.next = 0;
    }
    const bytes = bytesOf(frame);
    this.next = frame.offset + bytes.length;
    for (let start = 0; start <= bytes.length; ) {
      const nl = bytes.indexOf(0x0a, start);
      const end = nl === -1 ? bytes.length : nl;
      const piece = bytes.subarray(start, end);
      let open = this.partial.get(frame.stream);
      if (!open && (piece.length > 0 || nl !== -1)) {
        open = { line: { attempt: frame.attempt, stream: frame.stream, offset: frame.offset + start, text: '' }, decoder: decoder() };
        this.partial.set(frame.stream, open);
      }
      // A multi-byte character split between two frames is decoded once both halves are in.
      if (open) open.line.text += open.decoder.decode(piece, { stream: nl === -1 });
      if (nl === -1 || !open) break;
      this.add(open.line);
      this.partial.delete(frame.stream);
      start = nl + 1;
    }
    return true;
  }

  /** Every line, the unterminated ones included (shown as they are). */
  all(): LogLine[] {
    const tail = [...this.partial.values()].map((p) => p.line).filter((l) => l.text !== '');
    return tail.length ? [...this.lines, ...tail].sort(byPosition) : this.lines;
  }

  /** Lines of the chosen streams that contain `needle` (case-insensitive), with how many there are. */
  search(needle: string, streams: ReadonlySet<LogStream>): LogLine[] {
    const n = needle.toLowerCase();
    return this.all().filter((l) => streams.has(l.stream) && (n === '' || l.text.toLowerCase().includes(n)));
  }

  private flush(): void {
    for (const p of this.partial.values()) if (p.line.text !== '') this.add(p.line);
    this.partial.clear();
  }

  /** Lines are kept in the order they started: one finished after a later line of the other stream goes before it. */
  private add(line: LogLine): void {
    let i = this.lines.length;
    while (i > 0 && byPosition(this.lines[i - 1], line) > 0) i--;
    this.lines.splice(i, 0, line);
    if (this.lines.length > this.maxLines) {
      const cut = this.lines.length - this.maxLines;
      this.lines.splice(0, cut);
      this.dropped += cut;
    }
  }
}

const byPosition = (a: LogLine, b: LogLine) => a.attempt - b.attempt || a.offset - b.offset;
