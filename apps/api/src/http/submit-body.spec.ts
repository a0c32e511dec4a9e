import { Readable } from 'node:stream';
import type { IncomingMessage } from 'node:http';
import { readSubmitBody } from './submit-body';

/** A request as Node hands it over: a readable body with headers. */
function request(body: Buffer | string, contentType: string): IncomingMessage {
  const buf = Buffer.from(body);
  return Object.assign(Readable.from([buf]), { headers: { 'content-type': contentType, 'content-length': String(buf.length) } }) as unknown as IncomingMessage;
}

const form = (parts: [string, string | Buffer][], boundary = 'XyZ') =>
  Buffer.concat([
    ...parts.flatMap(([name, data]) => [Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n`), Buffer.from(data), Buffer.from('\r\n')]),
    Buffer.from(`--${boundary}--\r\n`),
  ]);

describe('readSubmitBody', () => {
  it('reads a JSON spec as before', async () => {
    expect(await readSubmitBody(request('{"command":"true"}', 'application/json'))).toEqual({ spec: { command: 'true' } });
  });

  it('reads the spec and the archive (binary-safe) of a multipart submission', async () => {
    const archive = Buffer.from([0x1f, 0x8b, 0, 13, 10, 45, 45, 255]);
    const r = await readSubmitBody(request(form([['spec', '{"command":"true","source":{"archive":true}}'], ['archive', archive]]), 'multipart/form-data; boundary=XyZ'));
    expect(r.spec).toEqual({ command: 'true', source: { archive: true } });
    expect(r.archive?.equals(archive)).toBe(true);
  });

  it('refuses unknown parts, a missing spec, bad JSON and oversize bodies', async () => {
    const mp = 'multipart/form-data; boundary=XyZ';
    await expect(readSubmitBody(request(form([['spec', '{}'], ['other', 'x']]), mp))).rejects.toThrow(/unknown multipart part "other"/);
    await expect(readSubmitBody(request(form([['archive', 'x']]), mp))).rejects.toThrow(/without a spec part/);
    await expect(readSubmitBody(request(form([['spec', '{']]), mp))).rejects.toThrow(/malformed JSON in the spec part/);
    await expect(readSubmitBody(request(form([['spec', '{}'], ['archive', 'x'.repeat(100)]]), mp), 50)).rejects.toThrow(/too large/);
  });
});
