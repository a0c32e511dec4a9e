import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** A server's TLS material: its certificate and key, and the CA client certificates must chain to. */
export interface TlsFiles {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** The files a TLS folder holds (as `jobline certs init` writes them). */
export const TLS_FILE_NAMES = { ca: 'ca.crt', cert: 'server.crt', key: 'server.key' } as const;

/** Reads ca.crt, server.crt and server.key from a folder; null when any is missing. */
export function readTlsDir(dir: string): TlsFiles | null {
  const paths = { ca: join(dir, TLS_FILE_NAMES.ca), cert: join(dir, TLS_FILE_NAMES.cert), key: join(dir, TLS_FILE_NAMES.key) };
  if (!Object.values(paths).every((p) => existsSync(p))) return null;
  return { ca: readFileSync(paths.ca), cert: readFileSync(paths.cert), key: readFileSync(paths.key) };
}
