import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { which } from '../sandbox/host';

/**
 * Finds the jobline-launcher binary, building it from its C source when the source is
 * there and the binary is missing or older than the source (a checkout, the tests). A
 * deployment without the source (the Docker image) uses the binary `npm run build` made.
 */

const SOURCE = join('apps', 'executor', 'src', 'node', 'launcher', 'jobline-launcher.c');
const BINARY = join('dist', 'bin', 'jobline-launcher');

/** The folder holding Jobline's package.json, from this file's place in the source or in dist/. */
export function packageRoot(from = __dirname): string | null {
  for (let dir = from; ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'jobline') return dir;
      } catch {
        // not ours
      }
    }
    if (dirname(dir) === dir) return null;
  }
}

/** The launcher's path, or why there is none. Builds it (a C compiler is needed) when the source is newer. */
export function findLauncher(root = packageRoot()): { path: string } | { reason: string } {
  if (process.platform !== 'linux') return { reason: `the launcher needs Linux, not ${process.platform}` };
  if (!root) return { reason: 'cannot find the Jobline package folder (package.json) to locate dist/bin/jobline-launcher' };
  const bin = join(root, BINARY);
  const source = join(root, SOURCE);
  if (!existsSync(source)) return existsSync(bin) ? checked(bin) : { reason: `${bin} is missing (npm run build makes it)` };
  const digest = createHash('sha256').update(readFileSync(source)).digest('hex');
  const stamp = `${bin}.sha256`;
  if (existsSync(bin) && existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === digest) return checked(bin);
  const cc = which('cc') ?? which('gcc') ?? which('clang');
  if (!cc) return { reason: `${bin} is missing or older than its source and no C compiler (cc) is installed to build it (scripts/system-deps.sh installs one)` };
  mkdirSync(dirname(bin), { recursive: true });
  // Built beside, then renamed: concurrent builders (parallel test files) never see half a binary.
  const tmp = `${bin}.${process.pid}.tmp`;
  const r = spawnSync(cc, ['-O2', '-Wall', '-o', tmp, source], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) {
    rmSync(tmp, { force: true });
    return { reason: `building ${bin} failed: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}` };
  }
  chmodSync(tmp, 0o755);
  renameSync(tmp, bin);
  writeFileSync(`${stamp}.${process.pid}.tmp`, `${digest}\n`);
  renameSync(`${stamp}.${process.pid}.tmp`, stamp);
  return checked(bin);
}

/** A root-run helper must not be replaceable by anyone else: ours or root's, not writable by group or others. */
function checked(bin: string): { path: string } | { reason: string } {
  const me = typeof process.geteuid === 'function' ? process.geteuid() : -1;
  for (const p of [bin, dirname(bin)]) {
    const st = statSync(p);
    if ((st.uid !== me && st.uid !== 0) || (st.mode & 0o022) !== 0) return { reason: `${p} is writable by others or owned by uid ${st.uid}: refusing to run it` };
  }
  return { path: bin };
}

if (require.main === module) {
  const found = findLauncher();
  if ('reason' in found) {
    console.error(found.reason);
    process.exit(1);
  }
  console.log(found.path);
}
