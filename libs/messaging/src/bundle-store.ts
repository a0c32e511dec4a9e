import type { NatsConnection } from '@nats-io/nats-core';
import { StorageType } from '@nats-io/jetstream';
import { Objm, type ObjectStore } from '@nats-io/obj';

/** The JetStream object store bucket holding bundles, one object per digest. */
export const BUNDLE_BUCKET = 'jobline-bundles';

/** `sha256:<hex>` → `<hex>`, refusing anything else (an object name must never come from an unchecked string). */
export function digestHex(digest: string): string {
  const m = /^(?:sha256:)?([0-9a-f]{64})$/.exec(digest);
  if (!m) throw new Error(`invalid bundle digest ${JSON.stringify(digest)}`);
  return m[1];
}

/** sha256 of bytes as lowercase hex, with web-standard crypto (runs under Node and Deno). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Bundles stored once by digest (content-addressed): putting the same bytes twice stores
 * them once. Runtime-neutral (the executor core uses it under Node and Deno).
 */
export class BundleStore {
  private constructor(private readonly os: ObjectStore) {}

  static async open(nc: NatsConnection, options: { replicas?: number } = {}): Promise<BundleStore> {
    const os = await new Objm(nc).create(BUNDLE_BUCKET, { storage: StorageType.File, replicas: options.replicas ?? 1 });
    return new BundleStore(os);
  }

  /** Stores the bytes under their sha256 unless already there; returns `sha256:<hex>`. */
  async put(bytes: Uint8Array): Promise<{ digest: string; stored: boolean }> {
    const hex = await sha256Hex(bytes);
    if (await this.stored(hex)) return { digest: `sha256:${hex}`, stored: false };
    await this.os.putBlob({ name: hex, description: 'jobline bundle (tar.gz)' }, bytes);
    return { digest: `sha256:${hex}`, stored: true };
  }

  async has(digest: string): Promise<boolean> {
    return this.stored(digestHex(digest));
  }

  /** The object store keeps the info of a deleted object (marked deleted): that is not a stored bundle. */
  private async stored(hex: string): Promise<boolean> {
    const info = await this.os.info(hex);
    return info !== null && !info.deleted;
  }

  /** The bundle's bytes, verified against its digest; null when it is not stored. */
  async get(digest: string): Promise<Uint8Array | null> {
    const hex = digestHex(digest);
    const bytes = await this.os.getBlob(hex);
    if (!bytes) return null;
    const actual = await sha256Hex(bytes);
    if (actual !== hex) throw new Error(`bundle ${hex} is corrupt: its bytes hash to ${actual}`);
    return bytes;
  }

  async delete(digest: string): Promise<void> {
    await this.os.delete(digestHex(digest));
  }

  /** Every stored bundle's digest (`sha256:<hex>`). */
  async list(): Promise<string[]> {
    return (await this.os.list()).filter((i) => !i.deleted && /^[0-9a-f]{64}$/.test(i.name)).map((i) => `sha256:${i.name}`);
  }
}

/** The JetStream object store bucket holding source archives uploaded with a job, by jobId, until packaged. */
export const UPLOAD_BUCKET = 'jobline-uploads';

/** Source archives uploaded with POST /v1/jobs (multipart), kept for the packager under the job's id. */
export class UploadStore {
  private constructor(private readonly os: ObjectStore) {}

  static async open(nc: NatsConnection, options: { replicas?: number; maxAgeMs?: number } = {}): Promise<UploadStore> {
    const os = await new Objm(nc).create(UPLOAD_BUCKET, { storage: StorageType.File, replicas: options.replicas ?? 1, ttl: (options.maxAgeMs ?? 7 * 24 * 3600_000) * 1_000_000 });
    return new UploadStore(os);
  }

  async put(jobId: string, bytes: Uint8Array): Promise<void> {
    await this.os.putBlob({ name: `archive-${jobId}`, description: 'jobline source archive' }, bytes);
  }

  /**
   * Stores an upload as it arrives. The object appears only once `stream` closes; if it
   * errors, the chunks already sent are purged and the stream's error is thrown.
   */
  async putStream(jobId: string, stream: ReadableStream<Uint8Array>): Promise<void> {
    await this.os.put({ name: `archive-${jobId}`, description: 'jobline source archive' }, stream);
  }

  get(jobId: string): Promise<Uint8Array | null> {
    return this.os.getBlob(`archive-${jobId}`);
  }

  async delete(jobId: string): Promise<void> {
    await this.os.delete(`archive-${jobId}`).catch(() => undefined);
  }
}
