import busboy, { type Busboy, type FieldInfo } from 'busboy';
import { createParamDecorator, UnsupportedMediaTypeException, type ExecutionContext, type PipeTransform } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { Transform, pipeline, type Readable } from 'node:stream';
import { ValidationError } from '../../../../libs/contracts/src';
import { MAX_BODY_BYTES, readJsonBody } from './json-body';

/** Largest archive part of a multipart submission: 256 MiB. */
export const MAX_ARCHIVE_BYTES = 256 * 1024 * 1024;

/** Room for the multipart framing itself (boundaries, part headers) beyond the spec and the archive. */
const FRAMING_BYTES = 64 * 1024;

/**
 * The `archive` part of a multipart submission, streamed: its bytes are read from the
 * request as the consumer pulls them (nothing is buffered beyond the stream's high-water
 * mark), with the size limit enforced while reading.
 */
export interface ArchiveUpload {
  /**
   * The archive's bytes as they arrive. It closes only once the whole request body was read
   * and found valid, and errors (with a ValidationError naming the problem) when the body
   * breaks a limit, is malformed, or has another part after the archive — so a consumer that
   * stores it (the object store) never commits a bad upload.
   */
  readonly stream: ReadableStream<Uint8Array>;
  /** Reads and drops the rest of the body, for a submission refused before its archive is stored. */
  discard(): Promise<void>;
}

export interface SubmitBodyValue {
  spec: unknown;
  archive?: ArchiveUpload;
}

export interface SubmitBodyLimits {
  /** Largest archive part (default MAX_ARCHIVE_BYTES). */
  maxArchiveBytes?: number;
  /** Largest spec part (default 1 MiB, like a JSON body). */
  maxSpecBytes?: number;
}

const bad = (message: string) => new ValidationError(message, [{ path: '(body)', message }]);

/**
 * POST /v1/jobs body: JSON (a JobSpec), or multipart/form-data with a `spec` part (JSON,
 * first) and an `archive` part (the source, zip or tar.gz), parsed by busboy as it arrives.
 * Resolves as soon as the archive part starts (its bytes then come through `archive.stream`),
 * or when a body without one has been read. Refused with a clear 400: a missing, repeated or
 * unknown part, an archive before the spec, a spec that is not UTF-8 JSON, a part over its
 * limit, a malformed body.
 */
export async function readSubmitBody(req: IncomingMessage, limits: SubmitBodyLimits = {}): Promise<SubmitBodyValue> {
  const header = req.headers['content-type'] ?? '';
  if (!/^multipart\/form-data\s*;/i.test(header)) return { spec: await readJsonBody(req) };
  if (!/boundary=/i.test(header)) throw new UnsupportedMediaTypeException('multipart/form-data without a boundary');
  const maxArchive = limits.maxArchiveBytes ?? MAX_ARCHIVE_BYTES;
  const maxSpec = limits.maxSpecBytes ?? MAX_BODY_BYTES;
  const maxBody = maxArchive + maxSpec + FRAMING_BYTES;
  const tooLarge = () => bad(`request body too large: the archive part may have at most ${maxArchive} bytes and the spec part ${maxSpec}`);
  if (Number(req.headers['content-length'] ?? 0) > maxBody) throw tooLarge();

  return new Promise<SubmitBodyValue>((resolveBody, rejectBody) => {
    let spec: { value: unknown } | null = null;
    let archive: Readable | null = null;
    let handedOver = false;
    let failure: Error | null = null;
    let finished = false;
    let onComplete: ((err: Error | null) => void) | null = null;

    /** The first problem wins; everything after it is read and dropped (busboy keeps parsing within its limits). */
    const fail = (err: Error) => {
      if (failure) return;
      failure = err;
      if (!handedOver) rejectBody(err);
      archive?.destroy(err);
      onComplete?.(err);
      // Read the rest and drop it, so the client gets the 400 instead of a reset connection.
      req.unpipe();
      req.resume();
    };
    const done = () => {
      finished = true;
      if (failure) return;
      if (!handedOver) {
        if (!spec) return fail(bad('multipart submission without a spec part'));
        handedOver = true;
        return resolveBody({ spec: spec.value });
      }
      onComplete?.(null);
    };

    let boy: Busboy;
    try {
      boy = busboy({
        headers: req.headers,
        // latin1 keeps the spec's bytes as they are, so they are checked as UTF-8 below instead of being repaired.
        defCharset: 'latin1',
        // busboy reports a limit when it is reached: 3 parts means a third one was sent.
        limits: { fieldSize: maxSpec, fileSize: maxArchive, files: 1, fields: 2, parts: 3, headerPairs: 16 },
      });
    } catch (err) {
      return rejectBody(bad(`malformed multipart body: ${(err as Error).message}`));
    }
    // busboy makes a part with a filename (or application/octet-stream) a file, anything else a field.
    boy.on('field', (name: string, value: string, info: FieldInfo) => {
      if (name === 'archive') return fail(bad('the archive part must be sent as a file, with a filename (curl -F archive=@src.tar.gz)'));
      if (name !== 'spec') return fail(bad(`unknown multipart part ${JSON.stringify(name)} (expected spec and archive)`));
      if (spec) return fail(bad('multipart part "spec" appears twice'));
      if (info.valueTruncated) return fail(bad(`the spec part is larger than ${maxSpec} bytes`));
      if (archive) return fail(bad('the spec part must come before the archive part'));
      try {
        spec = { value: JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(value, 'latin1'))) as unknown };
      } catch (err) {
        fail(bad(`malformed JSON in the spec part: ${(err as Error).message}`));
      }
    });
    boy.on('file', (name: string, file: Readable) => {
      archive = file;
      // Errors reach the consumer through its reads; one nobody reads must not crash the process.
      file.on('error', () => undefined);
      if (failure) return file.resume();
      if (name !== 'archive') {
        file.resume();
        return fail(bad(name === 'spec' ? 'the spec part must be JSON text, not a file upload (curl -F spec=\'{...}\' or -F spec=\'<spec.json\')' : `unknown multipart part ${JSON.stringify(name)} (expected spec and archive)`));
      }
      if (!spec) {
        file.resume();
        return fail(bad('the spec part must come before the archive part (send spec first, then archive)'));
      }
      file.on('limit', () => fail(tooLarge()));
      handedOver = true;
      resolveBody({ spec: spec.value, archive: upload(file) });
    });
    boy.on('partsLimit', () => fail(bad('a multipart submission has two parts: spec, then archive')));
    boy.on('filesLimit', () => fail(bad('multipart part "archive" appears twice')));
    boy.on('fieldsLimit', () => fail(bad('multipart part "spec" appears twice, or an unknown part was sent')));
    boy.on('error', (err: Error) => fail(bad(`malformed multipart body: ${err.message}`)));
    boy.on('close', done);

    // Counts every byte, framing included, so a body cannot grow without bound outside the parts.
    let total = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        total += chunk.length;
        if (total > maxBody) return cb(tooLarge());
        cb(null, chunk);
      },
    });
    pipeline(req, counter, boy, (err) => {
      if (err) fail(err instanceof ValidationError ? err : bad(`malformed multipart body: ${err.message}`));
    });

    function upload(file: Readable): ArchiveUpload {
      const complete = new Promise<void>((resolve, reject) => {
        onComplete = (err) => (err ? reject(err) : resolve());
        if (failure) reject(failure);
        else if (finished) resolve();
      });
      complete.catch(() => undefined);
      // Created on the first read: an iterator holds the stream paused, which would stop discard() from draining it.
      let iterator: AsyncIterator<Buffer> | null = null;
      const chunks = () => (iterator ??= file[Symbol.asyncIterator]() as AsyncIterator<Buffer>);
      return {
        stream: new ReadableStream<Uint8Array>({
          async pull(controller) {
            try {
              const next = await chunks().next();
              if (!next.done) return controller.enqueue(new Uint8Array(next.value.buffer, next.value.byteOffset, next.value.byteLength));
              // The archive part ended: close only once the rest of the body proved valid.
              await complete;
              controller.close();
            } catch (err) {
              controller.error(failure ?? err);
            }
          },
          cancel(reason) {
            fail(reason instanceof Error ? reason : new Error('the upload was cancelled'));
          },
        }),
        discard: async () => {
          if (iterator) {
            try {
              while (!(await iterator.next()).done);
            } catch {
              // Already failed: the rest of the body is drained by fail().
            }
          } else file.resume();
          await complete.catch(() => undefined);
        },
      };
    }
  });
}

const RequestOf = createParamDecorator((_: unknown, ctx: ExecutionContext) => ctx.switchToHttp().getRequest<IncomingMessage>());

class SubmitBodyPipe implements PipeTransform<IncomingMessage, Promise<SubmitBodyValue>> {
  transform(req: IncomingMessage): Promise<SubmitBodyValue> {
    return readSubmitBody(req);
  }
}

/** The submission body, read after the guards ran (like JsonBody); a multipart archive is left streaming. */
export const SubmitBody = (): ParameterDecorator => RequestOf(undefined, new SubmitBodyPipe());
