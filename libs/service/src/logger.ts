import pino, { type DestinationStream, type Level, type Logger as PinoLogger } from 'pino';
import type { LoggerService } from '@nestjs/common';

/**
 * One log format for every service: pino JSON lines with `service` (and `jobId`, `attempt`
 * where they apply, as fields), or readable text lines for a person at a terminal (colour only
 * when the stream is a TTY). Built in each service's start function from the configuration.
 */
export interface LogOptions {
  service: string;
  level: 'debug' | 'info' | 'warn' | 'error';
  /** null: text when the destination is a terminal, else json. */
  format: 'json' | 'text' | null;
  /** Default process.stdout. */
  destination?: NodeJS.WritableStream & { isTTY?: boolean };
}

export type ServiceLogger = PinoLogger;

export function createLogger(o: LogOptions): ServiceLogger {
  const out = o.destination ?? process.stdout;
  const format = o.format ?? (out.isTTY ? 'text' : 'json');
  const base = { service: o.service };
  if (format === 'json') return pino({ level: o.level, base, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } }, out as DestinationStream);
  return pino({ level: o.level, base, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } }, textDestination(out, Boolean(out.isTTY)));
}

const COLOURS: Record<string, string> = { debug: '\x1b[90m', info: '\x1b[36m', warn: '\x1b[33m', error: '\x1b[31m', fatal: '\x1b[31m' };

/** Formats pino's JSON lines as `time LEVEL [service] message {fields}`. */
function textDestination(out: NodeJS.WritableStream, colour: boolean): DestinationStream {
  return {
    write(line: string) {
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        out.write(line);
        return;
      }
      const { time, level, service, msg, pid: _pid, hostname: _host, ...fields } = rec;
      const lvl = String(level ?? 'info');
      const tag = lvl.toUpperCase().padEnd(5);
      const head = colour ? `${COLOURS[lvl] ?? ''}${tag}\x1b[0m` : tag;
      const extra = Object.keys(fields).length ? ` ${JSON.stringify(fields)}` : '';
      out.write(`${String(time)} ${head} [${String(service)}] ${String(msg ?? '')}${extra}\n`);
    },
  };
}

/**
 * The message-first logger most components take (`log(message, ...rest)`): a trailing plain
 * object becomes pino fields, an Error its `err`, anything else is appended to the message.
 */
export interface MessageLogger {
  debug(message: string, ...rest: unknown[]): void;
  log(message: string, ...rest: unknown[]): void;
  info(message: string, ...rest: unknown[]): void;
  warn(message: string, ...rest: unknown[]): void;
  error(message: string, ...rest: unknown[]): void;
}

export function messageLogger(p: ServiceLogger): MessageLogger {
  const at = (level: Level) => (message: string, ...rest: unknown[]) => {
    if (!p.isLevelEnabled(level)) return;
    const fields: Record<string, unknown> = {};
    const words: string[] = [];
    for (const r of rest) {
      if (r instanceof Error) fields.err = r;
      else if (r && typeof r === 'object' && !Array.isArray(r)) Object.assign(fields, r);
      else if (r !== undefined) words.push(String(r));
    }
    p[level](fields, words.length ? `${message} ${words.join(' ')}` : message);
  };
  return { debug: at('debug'), log: at('info'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** Nest's own messages (bootstrap, route errors) through the same logger, as `nest` fields. */
export function nestLogger(p: ServiceLogger): LoggerService {
  const ctx = (optional: unknown[]) => (typeof optional[optional.length - 1] === 'string' ? { context: optional[optional.length - 1] } : {});
  return {
    log: (m: unknown, ...o: unknown[]) => p.debug(ctx(o), String(m)),
    error: (m: unknown, ...o: unknown[]) => p.error(ctx(o), String(m)),
    warn: (m: unknown, ...o: unknown[]) => p.warn(ctx(o), String(m)),
    debug: (m: unknown, ...o: unknown[]) => p.debug(ctx(o), String(m)),
    verbose: (m: unknown, ...o: unknown[]) => p.trace(ctx(o), String(m)),
  };
}

/**
 * A pino logger whose records go to a message-first logger (tests and benchmarks count or
 * silence what services log this way): `message {fields}` at the record's level.
 */
export function loggerTo(target: { debug?(m: string): void; log(m: string): void; warn(m: string): void; error(m: string): void }, service: string, level: LogOptions['level'] = 'debug'): ServiceLogger {
  return pino(
    { level, base: { service }, formatters: { level: (label) => ({ level: label }) } },
    {
      write(line: string) {
        let rec: Record<string, unknown>;
        try {
          rec = JSON.parse(line) as Record<string, unknown>;
        } catch {
          target.log(line.trimEnd());
          return;
        }
        const { level: lvl, msg, time: _t, pid: _p, hostname: _h, service: svc, ...fields } = rec;
        const text = `${String(svc)}: ${String(msg ?? '')}${Object.keys(fields).length ? ` ${JSON.stringify(fields)}` : ''}`;
        if (lvl === 'error' || lvl === 'fatal') target.error(text);
        else if (lvl === 'warn') target.warn(text);
        else if (lvl === 'info') target.log(text);
        else target.debug?.(text);
      },
    },
  );
}
