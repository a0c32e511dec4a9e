import { createParamDecorator, UnsupportedMediaTypeException, type ExecutionContext, type PipeTransform } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { ValidationError } from '../../../../libs/contracts/src';
import { readJsonBody } from './json-body';

/** Largest multipart submission (spec + archive): 256 MiB. */
export const MAX_ARCHIVE_BYTES = 256 * 1024 * 1024;

export interface SubmitBodyValue {
  spec: unknown;
  /** The `archive` part of a multipart submission (zip or tar.gz). */
  archive?: Buffer;
}

const bad = (message: string) => new ValidationError(message, [{ path: '(body)', message }]);

/**
 * POST /v1/jobs body: JSON (a JobSpec), or multipart/form-data with a `spec` part (JSON)
 * and an `archive` part (the source, zip or tar.gz).
 */
export async function readSubmitBody(req: IncomingMessage, limit = MAX_ARCHIVE_BYTES): Promise<SubmitBodyValue> {
  const header = req.headers['content-type'] ?? '';
  if (!/^multipart\/form-data\s*;/i.test(header)) return { spec: await readJsonBody(req) };
  const boundary = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(header);
  if (!boundary) throw new UnsupportedMediaTypeException('multipart/form-data without a boundary');
  if (Number(req.headers['content-length'] ?? 0) > limit) throw bad(`request body too large: the limit is ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > limit) throw bad(`request body too large: the limit is ${limit} bytes`);
    chunks.push(c);
  }
  const body = Buffer.concat(chunks);
  const delimiter = Buffer.from(`--${boundary[1] ?? boundary[2]}`);
  const parts = new Map<string, Buffer>();
  let at = body.indexOf(delimiter);
  if (at < 0) throw bad('malformed multipart body: no boundary found');
  for (;;) {
    const start = at + delimiter.length;
    if (body.subarray(start, start + 2).toString() === '--') break;
    const headerEnd = body.indexOf('\r\n\r\n', start);
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delimiter]), start);
    if (headerEnd < 0 || next < 0 || headerEnd > next) throw bad('malformed multipart body');
    const headers = body.subarray(start, headerEnd).toString('latin1');
    const name = /content-disposition:[^\r\n]*\bname="([^"]*)"/i.exec(headers)?.[1];
    if (!name) throw bad('malformed multipart body: a part has no name');
    if (parts.has(name)) throw bad(`multipart part ${name} appears twice`);
    parts.set(name, body.subarray(headerEnd + 4, next));
    at = next + 2;
  }
  for (const name of parts.keys()) if (name !== 'spec' && name !== 'archive') throw bad(`unknown multipart part ${JSON.stringify(name)} (expected spec and archive)`);
  const specPart = parts.get('spec');
  if (!specPart) throw bad('multipart submission without a spec part');
  let spec: unknown;
  try {
    spec = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(specPart));
  } catch (err) {
    throw bad(`malformed JSON in the spec part: ${(err as Error).message}`);
  }
  const archive = parts.get('archive');
  return { spec, ...(archive ? { archive: Buffer.from(archive) } : {}) };
}

const RequestOf = createParamDecorator((_: unknown, ctx: ExecutionContext) => ctx.switchToHttp().getRequest<IncomingMessage>());

class SubmitBodyPipe implements PipeTransform<IncomingMessage, Promise<SubmitBodyValue>> {
  transform(req: IncomingMessage): Promise<SubmitBodyValue> {
    return readSubmitBody(req);
  }
}

/** The submission body, read after the guards ran (like JsonBody). */
export const SubmitBody = (): ParameterDecorator => RequestOf(undefined, new SubmitBodyPipe());
