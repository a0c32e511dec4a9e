import { createParamDecorator, UnsupportedMediaTypeException, type ExecutionContext, type PipeTransform } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { ValidationError } from '../../../../libs/contracts/src';

/** Largest request body accepted (1 MiB). */
export const MAX_BODY_BYTES = 1024 * 1024;

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json$/i;

/**
 * Reads a request body as JSON: `undefined` when there is none. Refused with a clear 400:
 * a body over `limit` (the rest of it is read and dropped, so the client gets the answer
 * instead of a reset connection), bytes that are not UTF-8, text that is not JSON.
 * 415 for a body that is not `application/json` or is compressed.
 */
export async function readJsonBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<unknown> {
  const declared = req.headers['content-length'];
  const hasBody = req.headers['transfer-encoding'] !== undefined || (declared !== undefined && declared !== '0');
  if (!hasBody) return undefined;
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim();
  const params = (req.headers['content-type'] ?? '').split(';').slice(1).map((p) => p.trim().toLowerCase());
  if (!JSON_TYPE.test(type)) {
    await discard(req);
    throw new UnsupportedMediaTypeException(`the body must be application/json (got ${type ? JSON.stringify(type) : 'no Content-Type'})`);
  }
  const charset = params.find((p) => p.startsWith('charset='))?.slice('charset='.length).replace(/"/g, '');
  const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
  if ((charset && charset !== 'utf-8' && charset !== 'utf8') || encoding !== 'identity') {
    await discard(req);
    throw new UnsupportedMediaTypeException('the body must be uncompressed UTF-8 JSON');
  }
  const tooLarge = () =>
    new ValidationError(`request body too large: the limit is ${limit} bytes (1 MiB)`, [{ path: '(body)', message: `larger than ${limit} bytes` }]);
  if (declared !== undefined && Number(declared) > limit) {
    await discard(req);
    throw tooLarge();
  }
  const parts: Buffer[] = [];
  let size = 0;
  let over = false;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    if (over) continue;
    size += chunk.length;
    if (size > limit) {
      over = true;
      parts.length = 0;
      continue;
    }
    parts.push(chunk);
  }
  if (over) throw tooLarge();
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(Buffer.concat(parts));
  } catch {
    throw new ValidationError('malformed JSON: the body is not valid UTF-8', [{ path: '(body)', message: 'not valid UTF-8' }]);
  }
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new ValidationError(`malformed JSON: ${why}`, [{ path: '(body)', message: why }]);
  }
}

/** Reads and drops a body that will not be used, so the response is not cut short by an unread request. */
function discard(req: IncomingMessage): Promise<void> {
  if (req.readableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    req.once('end', resolve);
    req.once('close', resolve);
    req.once('error', () => resolve());
    req.resume();
  });
}

const RequestOf = createParamDecorator((_: unknown, ctx: ExecutionContext) => ctx.switchToHttp().getRequest<IncomingMessage>());

class JsonBodyPipe implements PipeTransform<IncomingMessage, Promise<unknown>> {
  transform(req: IncomingMessage): Promise<unknown> {
    return readJsonBody(req);
  }
}

/**
 * The parsed JSON body (undefined when empty). Read after the guards ran, so an unauthenticated
 * caller is refused before its body is even read (Nest's own body parser is turned off).
 */
export const JsonBody = (): ParameterDecorator => RequestOf(undefined, new JsonBodyPipe());
