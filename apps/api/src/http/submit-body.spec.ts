import type { IncomingMessage } from 'node:http';
import { PassThrough, Readable } from 'node:stream';
import { ValidationError } from '../../../../libs/contracts/src';
import { readSubmitBody, type ArchiveUpload } from './submit-body';

/** A request as Node hands it over: a readable body with headers. */
function request(body: Buffer | string, contentType: string): IncomingMessage {
  const buf = Buffer.from(body);
  return Object.assign(Readable.from([buf]), { headers: { 'content-type': contentType, 'content-length': String(buf.length) } }) as unknown as IncomingMessage;
}

const MP = 'multipart/form-data; boundary=XyZ';
const partHeader = (name: string, filename?: string) =>
  Buffer.from(`--XyZ\r\nContent-Disposition: form-data; name="${name}"${filename ? `; filename="${filename}"` : ''}\r\n\r\n`);
const form = (parts: [string, string | Buffer, string?][]) =>
  Buffer.concat([...parts.flatMap(([name, data, filename]) => [partHeader(name, filename), Buffer.from(data), Buffer.from('\r\n')]), Buffer.from('--XyZ--\r\n')]);

async function drain(upload: ArchiveUpload): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  const reader = upload.stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return Buffer.concat(chunks);
    chunks.push(value);
  }
}

const SPEC = '{"command":"true","source":{"archive":true}}';

describe('readSubmitBody', () => {
  it('reads a JSON spec as before', async () => {
    expect(await readSubmitBody(request('{"command":"true"}', 'application/json'))).toEqual({ spec: { command: 'true' } });
  });

  it('reads the spec and streams the archive (binary-safe)', async () => {
    const archive = Buffer.from([0x1f, 0x8b, 0, 13, 10, 45, 45, 255, 0x2d, 0x2d, 0x58]);
    const r = await readSubmitBody(request(form([['spec', SPEC], ['archive', archive, 'src.tar.gz']]), MP));
    expect(r.spec).toEqual({ command: 'true', source: { archive: true } });
    expect((await drain(r.archive!)).equals(archive)).toBe(true);
  });

  it('reads a multipart body without an archive', async () => {
    expect(await readSubmitBody(request(form([['spec', '{"command":"true"}']]), MP))).toEqual({ spec: { command: 'true' } });
  });

  it('found by the fuzzer: a part without headers and a large body is refused (another busboy hung on it)', async () => {
    const body = Buffer.concat([Buffer.from('--XyZ\r\n\r\n'), Buffer.alloc(70_000, 0x7a), Buffer.from('\r\n--XyZ--\r\n')]);
    await expect(readSubmitBody(request(body, MP))).rejects.toThrow(/malformed multipart body/);
  });

  it('hands the archive over while it is still arriving: nothing waits for (or buffers) the whole body', async () => {
    const body = new PassThrough();
    const req = Object.assign(body, { headers: { 'content-type': MP } }) as unknown as IncomingMessage;
    body.write(Buffer.concat([partHeader('spec', undefined), Buffer.from(SPEC), Buffer.from('\r\n'), partHeader('archive', 'a.zip')]));
    const first = Buffer.alloc(256 * 1024, 7);
    body.write(first);
    const r = await readSubmitBody(req);
    const reader = r.archive!.stream.getReader();
    let got = 0;
    while (got < 128 * 1024) got += (await reader.read()).value!.length;
    // The body is not finished, yet the first bytes of the archive have been read.
    expect(body.writableEnded).toBe(false);
    body.end(Buffer.concat([Buffer.alloc(1000, 8), Buffer.from('\r\n--XyZ--\r\n')]));
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      got += value.length;
    }
    expect(got).toBe(first.length + 1000);
  });

  it('refuses unknown or repeated parts, a missing spec, a spec after the archive, bad JSON, not UTF-8', async () => {
    const refused = async (body: Buffer) => {
      const err = await (async () => {
        const r = await readSubmitBody(request(body, MP));
        if (r.archive) await drain(r.archive);
      })().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ValidationError);
      return (err as Error).message;
    };
    expect(await refused(form([['spec', '{}'], ['other', 'x']]))).toMatch(/unknown multipart part "other"|unknown part/);
    expect(await refused(form([['other', 'x'], ['spec', '{}']]))).toMatch(/unknown multipart part "other"/);
    expect(await refused(form([['spec', '{}'], ['spec', '{}']]))).toMatch(/"spec" appears twice/);
    expect(await refused(form([['spec', SPEC], ['archive', 'no filename']]))).toMatch(/archive part must be sent as a file/);
    expect(await refused(form([['spec', '{"command":"true"}', 'spec.json']]))).toMatch(/spec part must be JSON text, not a file upload/);
    expect(await refused(form([['spec', SPEC], ['archive', 'a', 'a'], ['archive', 'b', 'b']]))).toMatch(/two parts|appears twice/);
    expect(await refused(form([['archive', 'x', 'a.zip']]))).toMatch(/spec part must come before the archive part/);
    expect(await refused(form([['archive', 'x', 'a.zip'], ['spec', SPEC]]))).toMatch(/spec part must come before the archive part/);
    expect(await refused(form([]))).toMatch(/without a spec part/);
    expect(await refused(form([['spec', '{']]))).toMatch(/malformed JSON in the spec part/);
    expect(await refused(form([['spec', Buffer.from('{"command":"caf\xe9"}', 'latin1')]]))).toMatch(/malformed JSON in the spec part/);
    expect(await refused(Buffer.from('--XyZ\r\nContent-Disposition: form-data; name="spec"\r\n\r\n{}'))).toMatch(/malformed multipart|without a spec/);
  });

  it('enforces the limits while reading: an oversize archive errors its stream, an oversize spec is refused', async () => {
    const big = form([['spec', SPEC], ['archive', Buffer.alloc(5000, 1), 'a.zip']]);
    const r = await readSubmitBody(request(big, MP), { maxArchiveBytes: 4096 });
    await expect(drain(r.archive!)).rejects.toThrow(/too large: the archive part may have at most 4096 bytes/);
    await expect(readSubmitBody(request(form([['spec', `{"command":"${'x'.repeat(200)}"}`]]), MP), { maxSpecBytes: 100 })).rejects.toThrow(/spec part is larger than 100 bytes/);
    // A declared length over every limit is refused before a byte is read.
    const declared = Object.assign(Readable.from([]), { headers: { 'content-type': MP, 'content-length': String(10 * 1024 ** 3) } }) as unknown as IncomingMessage;
    await expect(readSubmitBody(declared)).rejects.toThrow(/too large/);
  });

  it('a bad part after the archive fails the archive stream, so the upload is never committed', async () => {
    const r = await readSubmitBody(request(form([['spec', SPEC], ['archive', 'zipzip', 'a.zip'], ['extra', 'x']]), MP));
    await expect(drain(r.archive!)).rejects.toThrow(/two parts|unknown/);
  });
});
