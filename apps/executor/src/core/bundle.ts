import type { JobSpec } from '../../../../libs/contracts/src';
import { digestHex, sha256Hex } from '../../../../libs/messaging/src/bundle-store';
import { buildCommand, type Command } from './command';
import { LaunchError } from './process-runner.port';

/** Where bundles come from (the JetStream object store: BundleStore). */
export interface BundleSource {
  get(digest: string): Promise<Uint8Array | null>;
}

/** Per-host storage of fetched bundles, by hex digest (one implementation per runtime). */
export interface BundleCache {
  /** The file of a bundle already on this host, or null. */
  find(hex: string): Promise<string | null>;
  /** Writes a verified bundle; returns its file. */
  write(hex: string, bytes: Uint8Array): Promise<string>;
}

export interface Bundles {
  source: BundleSource;
  cache: BundleCache;
}

/** Fetches a bundle by digest (once per host), verifies its sha256 and returns the local file. */
export async function materializeBundle(digest: string, bundles: Bundles): Promise<string> {
  const hex = digestHex(digest);
  const cached = await bundles.cache.find(hex);
  if (cached) return cached;
  const bytes = await bundles.source.get(digest);
  if (!bytes) throw new LaunchError(`bundle ${digest} is not in the bundle store`, 127);
  const actual = await sha256Hex(bytes);
  if (actual !== hex) throw new LaunchError(`bundle ${digest} failed verification: its bytes hash to sha256:${actual}`, 127);
  return bundles.cache.write(hex, bytes);
}

/** A bundled job runs its generated run.sh from the workspace root (run.sh itself enters the workdir). */
export function bundleCommand(spec: JobSpec): Command {
  const { env } = buildCommand(spec);
  return { argv: ['/bin/sh', '.jobline/run.sh'], env };
}
