import { Parser, type ReadEntry } from 'tar';

/** Where the packager writes the manifest inside every bundle. */
export const MANIFEST_PATH = '.jobline/manifest.json';
/** A manifest larger than this is not read (a bundle of 20,000 files has one of a few MiB). */
const MAX_MANIFEST_BYTES = 32 << 20;

/**
 * `.jobline/manifest.json` of a bundle (tar.gz bytes, already checked against its digest by
 * the store), parsed; null when the bundle has none. Only that entry is kept in memory.
 */
export function readBundleManifest(bundle: Uint8Array): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let found = false;
    let failed: Error | null = null;
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry: ReadEntry) => {
        if (entry.path !== MANIFEST_PATH || entry.type !== 'File' || found) return entry.resume();
        found = true;
        entry.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_MANIFEST_BYTES) failed ??= new Error(`the bundle's manifest is larger than ${MAX_MANIFEST_BYTES} bytes`);
          else chunks.push(c);
        });
      },
    });
    parser.on('error', reject);
    parser.on('end', () => {
      if (failed) return reject(failed);
      if (!found) return resolve(null);
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch (err) {
        reject(new Error(`the bundle's manifest is not JSON: ${(err as Error).message}`));
      }
    });
    // tar's parser recognises the gzip layer itself.
    parser.end(Buffer.from(bundle.buffer, bundle.byteOffset, bundle.byteLength));
  });
}
