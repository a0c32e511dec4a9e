import { generateKeyPairSync } from 'node:crypto';
import { pae, signStatement, verifyEnvelope, IN_TOTO_STATEMENT_TYPE, type InTotoStatement } from './attestation';
import { signingKeyFrom } from './chain-checkpoint';

describe('DSSE envelopes of in-toto statements', () => {
  const key = signingKeyFrom(generateKeyPairSync('ed25519').privateKey);
  const statement: InTotoStatement = { _type: IN_TOTO_STATEMENT_TYPE, subject: [{ name: 'x', digest: { sha256: 'ab'.repeat(32) } }], predicateType: 'https://example.com/p', predicate: { a: 1 } };

  it('PAE is the one of the DSSE spec (its test vector)', () => {
    expect(pae('http://example.com/HelloWorld', Buffer.from('hello world')).toString()).toBe('DSSEv1 29 http://example.com/HelloWorld 11 hello world');
  });

  it('a signed statement verifies with its key and gives the statement back', () => {
    const r = verifyEnvelope(signStatement({ ...statement }, key), [key.publicKey]);
    expect(r).toEqual({ ok: true, keyid: key.keyId, statement });
  });

  it.each([
    ['not an object', 'text'],
    ['another payload type', { payloadType: 'application/json' }],
    ['no signatures', { signatures: [] }],
    ['a payload that is not base64', { payload: 'not base64!' }],
    ['a signature by an unknown key id', { signatures: [{ keyid: 'ff'.repeat(32), sig: 'AAAA' }] }],
    ['a garbled signature', { signatures: [{ keyid: key.keyId, sig: 'AAAA' }] }],
  ])('refuses %s', (_name, change) => {
    const envelope = typeof change === 'string' ? change : { ...signStatement({ ...statement }, key), ...change };
    expect(verifyEnvelope(envelope, [key.publicKey])).toMatchObject({ ok: false, reason: expect.any(String) });
  });

  it('refuses a signed payload that is not an in-toto statement', () => {
    const envelope = signStatement({ ...statement, _type: 'https://example.com/other' } as never, key);
    expect(verifyEnvelope(envelope, [key.publicKey])).toMatchObject({ ok: false, reason: expect.stringContaining('not an in-toto Statement v1') });
  });
});
