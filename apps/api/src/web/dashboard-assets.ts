import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, join, relative, sep } from 'node:path';
import { gzipSync } from 'node:zlib';

/** One built file, held in memory with its gzip form (for text) and its ETag. */
export interface DashboardAsset {
  /** URL path, e.g. /assets/index-3f2a.js. */
  path: string;
  body: Buffer;
  gzip: Buffer | null;
  contentType: string;
  etag: string;
  /** Vite puts content-hashed files under /assets/: they never change, so they are cached for a year. */
  immutable: boolean;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};
const COMPRESSIBLE = new Set(['.html', '.js', '.css', '.json', '.svg', '.txt']);
/** The built dashboard is a few hundred KiB; this bounds what a wrong `dir` could pull into memory. */
const MAX_TOTAL_BYTES = 64 << 20;

/**
 * The dashboard's built files (`vite build` output), read once at start. Requests are
 * answered by exact lookup in this map, so no request path ever reaches the file system.
 */
export class DashboardAssets {
  private constructor(
    private readonly files: ReadonlyMap<string, DashboardAsset>,
    /** Where they were read from. */
    readonly dir: string,
  ) {}

  /** Reads every file under `dir`; null when there is no index.html there (not built). */
  static load(dir: string): DashboardAssets | null {
    if (!existsSync(join(dir, 'index.html'))) return null;
    const files = new Map<string, DashboardAsset>();
    let total = 0;
    const walk = (d: string) => {
      for (const entry of readdirSync(d, { withFileTypes: true })) {
        const abs = join(d, entry.name);
        if (entry.isDirectory()) walk(abs);
        else if (entry.isFile()) {
          total += statSync(abs).size;
          if (total > MAX_TOTAL_BYTES) throw new Error(`the dashboard folder ${dir} holds more than ${MAX_TOTAL_BYTES} bytes: is it the right folder?`);
          const path = '/' + relative(dir, abs).split(sep).join('/');
          const body = readFileSync(abs);
          const ext = extname(abs).toLowerCase();
          files.set(path, {
            path,
            body,
            gzip: COMPRESSIBLE.has(ext) && body.length > 1024 ? gzipSync(body, { level: 9 }) : null,
            contentType: TYPES[ext] ?? 'application/octet-stream',
            etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`,
            immutable: path.startsWith('/assets/'),
          });
        }
      }
    };
    walk(dir);
    return new DashboardAssets(files, dir);
  }

  get(path: string): DashboardAsset | null {
    return this.files.get(path) ?? null;
  }

  get index(): DashboardAsset {
    return this.files.get('/index.html')!;
  }

  get paths(): string[] {
    return [...this.files.keys()].sort();
  }
}

/**
 * Where `npm run build` writes the dashboard: <repository>/dist/web. The repository is the
 * nearest folder above this file with a package.json, which holds for the sources (jest)
 * and the compiled files (dist/apps/...) alike.
 */
export function defaultDashboardDir(from: string = __dirname): string {
  let d = from;
  while (!existsSync(join(d, 'package.json'))) {
    const up = dirname(d);
    if (up === d) return join(from, 'web');
    d = up;
  }
  return join(d, 'dist', 'web');
}
