import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import canonicalize from 'canonicalize';
import type { ChainCheckpointMessage } from '../../contracts/src/messages';
import type { TrustedHead } from './chain-verifier';

/**
 * A signed statement of the chain head: "the log up to `position` has link `chainHash`".
 * A verifier holding one detects a history rewritten with recomputed hashes (the link at
 * that position differs) and a truncated tail (the log ends before it), which the unkeyed
 * chain alone cannot. Signed with Ed25519 over the RFC 8785 canonical JSON of every field
 * but `signature`.
 */
export type ChainCheckpoint = ChainCheckpointMessage;

/** Checkpoints kept beside the events (SQLite file / PostgreSQL schema). */
export interface ChainCheckpointStore {
  save(checkpoint: ChainCheckpoint): Promise<void>;
  /** All of them, by position. */
  list(): Promise<ChainCheckpoint[]>;
  /** The one with the highest position, or undefined. */
  latest(): Promise<ChainCheckpoint | undefined>;
}

export interface SigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  keyId: string;
  /** The public key as PEM (SPKI), as published for offline verification. */
  publicKeyPem: string;
}

export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex');
}

export function signingKeyFrom(privateKey: KeyObject): SigningKey {
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error(`the signing key must be Ed25519, not ${privateKey.asymmetricKeyType ?? 'unknown'}`);
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKey, keyId: keyIdOf(publicKey), publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

/**
 * The Ed25519 key in a PEM (PKCS#8) file; with `create`, a new one is written (mode 0600)
 * when the file does not exist. Rotation: replace the file (keep the old public key to
 * verify what it signed).
 */
export function loadSigningKey(path: string, options: { create?: boolean } = {}): SigningKey {
  if (!existsSync(path)) {
    if (!options.create) throw new Error(`no signing key at ${path}`);
    mkdirSync(dirname(path), { recursive: true });
    const { privateKey } = generateKeyPairSync('ed25519');
    try {
      writeFileSync(path, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
    } catch (error) {
      // Another process starting at the same time wrote it first: use that one.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(path));
  } catch (error) {
    throw new Error(`the signing key ${path} is not a PEM private key: ${(error as Error).message}`, { cause: error });
  }
  return signingKeyFrom(key);
}

/** A public key (PEM SPKI) file, or the public half of a private key file. */
export function loadPublicKey(path: string): KeyObject {
  const pem = readFileSync(path);
  try {
    return createPublicKey(pem);
  } catch (error) {
    throw new Error(`${path} is not a PEM public key: ${(error as Error).message}`, { cause: error });
  }
}

function payload(checkpoint: Omit<ChainCheckpoint, 'signature'>): Buffer {
  const { type, position, chainHash, signedAt, keyId } = checkpoint;
  return Buffer.from(canonicalize({ type, position, chainHash, signedAt, keyId }) as string, 'utf8');
}

export function signCheckpoint(head: TrustedHead, key: SigningKey, signedAt: string): ChainCheckpoint {
  const unsigned = { type: 'jobline.chain-checkpoint/v1' as const, position: head.position, chainHash: head.chainHash, signedAt, keyId: key.keyId };
  return { ...unsigned, signature: sign(null, payload(unsigned), key.privateKey).toString('base64') };
}

/** True when `checkpoint` is signed by one of `keys` (matched by key id). */
export function checkpointSignedBy(checkpoint: ChainCheckpoint, keys: readonly KeyObject[]): boolean {
  const key = keys.find((k) => keyIdOf(k) === checkpoint.keyId);
  if (!key || checkpoint.type !== 'jobline.chain-checkpoint/v1') return false;
  try {
    return verify(null, payload(checkpoint), key, Buffer.from(checkpoint.signature, 'base64'));
  } catch {
    return false;
  }
}

/** The checkpoints signed by a trusted key, as heads for verifyStore; the rest are counted, not trusted. */
export function trustedHeads(checkpoints: readonly ChainCheckpoint[], keys: readonly KeyObject[]): { trusted: TrustedHead[]; untrusted: number } {
  const trusted: TrustedHead[] = [];
  let untrusted = 0;
  for (const c of checkpoints) {
    if (checkpointSignedBy(c, keys)) trusted.push({ position: c.position, chainHash: c.chainHash });
    else untrusted += 1;
  }
  return { trusted, untrusted };
}
