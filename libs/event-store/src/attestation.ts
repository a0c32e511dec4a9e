import { sign, verify, type KeyObject } from 'node:crypto';
import canonicalize from 'canonicalize';
import { keyIdOf, type SigningKey } from './chain-checkpoint';

/**
 * Signed provenance of a finished job: an in-toto Statement v1 in a DSSE envelope
 * (https://github.com/secure-systems-lab/dsse/blob/master/envelope.md), signed with
 * Ed25519 over the DSSE pre-authentication encoding. The same key signs the chain
 * checkpoints; `keyid` is the sha256 of its public key (SPKI DER), as for checkpoints.
 */
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const IN_TOTO_STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const JOBLINE_PREDICATE_TYPE = 'https://jobline.dev/attestation/job-run/v1';

export interface ResourceDescriptor {
  name: string;
  digest: Record<string, string>;
}

export interface InTotoStatement<P = unknown> {
  _type: typeof IN_TOTO_STATEMENT_TYPE;
  subject: ResourceDescriptor[];
  predicateType: string;
  predicate: P;
}

export interface DsseEnvelope {
  payloadType: string;
  /** The statement's bytes, base64. */
  payload: string;
  signatures: { keyid: string; sig: string }[];
}

/** DSSE v1 pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body (lengths in ASCII decimal bytes). */
export function pae(payloadType: string, body: Buffer): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `, 'utf8'), type, Buffer.from(` ${body.length} `, 'utf8'), body]);
}

/** The statement as RFC 8785 canonical JSON, signed over its PAE. */
export function signStatement(statement: InTotoStatement, key: SigningKey): DsseEnvelope {
  const body = Buffer.from(canonicalize(statement) as string, 'utf8');
  const sig = sign(null, pae(IN_TOTO_PAYLOAD_TYPE, body), key.privateKey).toString('base64');
  return { payloadType: IN_TOTO_PAYLOAD_TYPE, payload: body.toString('base64'), signatures: [{ keyid: key.keyId, sig }] };
}

export type EnvelopeVerification =
  | { ok: true; keyid: string; statement: InTotoStatement }
  | { ok: false; reason: string };

/**
 * Checks an envelope (parsed JSON of any shape) against trusted public keys: the payload
 * type, at least one signature by a trusted key over the PAE, and an in-toto v1 statement
 * inside. Anything else is refused with a reason; nothing is coerced.
 */
export function verifyEnvelope(envelope: unknown, keys: readonly KeyObject[]): EnvelopeVerification {
  if (typeof envelope !== 'object' || envelope === null || Array.isArray(envelope)) return { ok: false, reason: 'not a DSSE envelope (a JSON object)' };
  const e = envelope as Record<string, unknown>;
  if (e.payloadType !== IN_TOTO_PAYLOAD_TYPE) return { ok: false, reason: `payloadType is not ${IN_TOTO_PAYLOAD_TYPE}` };
  if (typeof e.payload !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(e.payload)) return { ok: false, reason: 'payload is not base64 text' };
  if (!Array.isArray(e.signatures) || e.signatures.length === 0) return { ok: false, reason: 'the envelope has no signatures' };
  const body = Buffer.from(e.payload, 'base64');
  if (body.toString('base64') !== e.payload) return { ok: false, reason: 'payload is not canonical base64' };
  const message = pae(IN_TOTO_PAYLOAD_TYPE, body);
  let signedBy: string | null = null;
  for (const s of e.signatures as unknown[]) {
    if (typeof s !== 'object' || s === null) continue;
    const { keyid, sig } = s as Record<string, unknown>;
    if (typeof keyid !== 'string' || typeof sig !== 'string') continue;
    const key = keys.find((k) => keyIdOf(k) === keyid);
    if (!key) continue;
    try {
      if (verify(null, message, key, Buffer.from(sig, 'base64'))) {
        signedBy = keyid;
        break;
      }
    } catch {
      // a malformed signature is simply not a valid one
    }
  }
  if (!signedBy) return { ok: false, reason: keys.length === 0 ? 'no trusted public key given' : 'no signature by a trusted key verifies (forged, altered, or signed by another key)' };
  let statement: unknown;
  try {
    statement = JSON.parse(body.toString('utf8'));
  } catch {
    return { ok: false, reason: 'the signed payload is not JSON' };
  }
  const st = statement as Partial<InTotoStatement> | null;
  if (!st || st._type !== IN_TOTO_STATEMENT_TYPE || !Array.isArray(st.subject) || typeof st.predicateType !== 'string') {
    return { ok: false, reason: `the signed payload is not an in-toto Statement v1` };
  }
  return { ok: true, keyid: signedBy, statement: st as InTotoStatement };
}
