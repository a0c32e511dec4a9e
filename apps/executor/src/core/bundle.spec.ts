import { LaunchError } from './process-runner.port';
import { bundleCommand, materializeBundle, type BundleCache, type BundleSource } from './bundle';

/** In-memory stand-ins for the two ports (the real ones are the object store and the file cache). */
function memory(objects: Record<string, Uint8Array>): { source: BundleSource; cache: BundleCache & { files: Map<string, Uint8Array> } } {
  const files = new Map<string, Uint8Array>();
  return {
    source: { get: async (digest) => objects[digest] ?? null },
    cache: {
      files,
      find: async (hex) => (files.has(hex) ? `/cache/${hex}` : null),
      write: async (hex, bytes) => {
        files.set(hex, bytes);
        return `/cache/${hex}`;
      },
    },
  };
}

const bytes = new TextEncoder().encode('bundle bytes');
const hex = '8b1d4e9a35ad4f4ef9c5d3b0b7b1e4b1fd3a0bf8d40d1aa2f3b1a0cf0c0b5f4e'; // not the real digest of `bytes`

async function digestOf(b: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest('SHA-256', b as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(d)].map((x) => x.toString(16).padStart(2, '0')).join('');
}

describe('materializeBundle', () => {
  it('fetches once, verifies the sha256 and keeps the bundle on the host', async () => {
    const real = await digestOf(bytes);
    const m = memory({ [`sha256:${real}`]: bytes });
    expect(await materializeBundle(`sha256:${real}`, m)).toBe(`/cache/${real}`);
    expect(m.cache.files.get(real)).toEqual(bytes);
    // Second time: from the cache, even with the store empty.
    expect(await materializeBundle(`sha256:${real}`, { source: { get: async () => null }, cache: m.cache })).toBe(`/cache/${real}`);
  });

  it('refuses bytes that do not hash to the digest, and writes nothing', async () => {
    const m = memory({ [`sha256:${hex}`]: bytes });
    const err = await materializeBundle(`sha256:${hex}`, m).catch((e) => e);
    expect(err).toBeInstanceOf(LaunchError);
    expect(err.message).toMatch(/failed verification/);
    expect(m.cache.files.size).toBe(0);
  });

  it('says so when the bundle is not stored, and refuses a malformed digest', async () => {
    await expect(materializeBundle(`sha256:${hex}`, memory({}))).rejects.toThrow(/not in the bundle store/);
    await expect(materializeBundle('sha256:../../etc/passwd', memory({}))).rejects.toThrow(/invalid bundle digest/);
  });
});

describe('bundleCommand', () => {
  it('runs the generated run.sh with the job environment', () => {
    expect(bundleCommand({ command: ['x'], priority: 'normal', env: { A: '1' } })).toEqual({
      argv: ['/bin/sh', '.jobline/run.sh'],
      env: expect.objectContaining({ A: '1', PATH: expect.any(String) }),
    });
  });
});
