/**
 * Bundle time for a repository of many files against `git archive --format=tar.gz` on the
 * same commit (DESIGN.md: at most 1.5×). The bundle side is the whole packager path for git:
 * fetch the commit (file://) and stream its tree out of git (no checkout), pack deterministically (manifest with every sha256, run.sh,
 * Dockerfile), gzip. The packager's per-URL mirror is used as in production: the first run
 * fetches into an empty mirror (bundleColdMs), later runs find the commit there (bundleMs, best).
 *
 *   npm run bench -- bundle [--files=N] [--mb=N]
 *   node dist/bench/bundle.bench.js [files] [mb]      (alone; prints one JSON line)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { JobSpecSchema } from '../libs/contracts/src';
import { tempDir } from '../libs/testing/src/temp-dir';
import { packFolder } from '../apps/packager/src/bundle-builder';
import { fetchGitTree } from '../apps/packager/src/git-source';
import { machineInfo, progress, roundMs, withDefaults } from './bench-kit';

export interface BundleBenchOptions {
  /** Files in the repository (default 10,000). */
  files: number;
  /** Total size in MB (default 100); half random, half text, so gzip has work of both kinds. */
  mb: number;
  /** Timed runs of each side; the best is reported (default 3). */
  runs: number;
}

export const BUNDLE_DEFAULTS: BundleBenchOptions = { files: 10_000, mb: 100, runs: 3 };

export async function runBundleBench(options: Partial<BundleBenchOptions> = {}) {
  const o = withDefaults(BUNDLE_DEFAULTS, options);
  const dir = tempDir('jobline-bundle-bench-');
  try {
    const repo = join(dir.path, 'repo');
    mkdirSync(repo);
    const env = { PATH: process.env.PATH, HOME: dir.path, GIT_CONFIG_NOSYSTEM: '1' };
    const git = (...args: string[]) => execFileSync('git', args, { cwd: repo, env, maxBuffer: 1 << 30 }).toString().trim();
    progress('bundle', `creating ${o.files} files, ${o.mb} MB`);
    const per = Math.max(1, Math.floor((o.mb * 1024 * 1024) / o.files));
    for (let i = 0; i < o.files; i++) {
      const sub = join(repo, `d${i % 100}`);
      if (i < 100) mkdirSync(sub);
      const body = i % 2 === 0 ? randomBytes(per) : Buffer.from(`line ${i} `.repeat(Math.ceil(per / 10)).slice(0, per));
      writeFileSync(join(sub, `f${i}.dat`), body);
    }
    git('init', '-q', '-b', 'main');
    git('add', '.');
    git('-c', 'user.email=b@example.com', '-c', 'user.name=b', 'commit', '-q', '-m', 'bench');
    const commit = git('rev-parse', 'HEAD');
    const spec = JobSpecSchema.parse({ command: 'true', source: { git: { url: `file://${repo}`, commit } } });

    const gitArchive: number[] = [];
    const bundle: number[] = [];
    let bundleBytes = 0;
    let archiveBytes = 0;
    for (let run = 0; run < o.runs; run++) {
      let t0 = performance.now();
      const out = spawnSync('git', ['archive', '--format=tar.gz', commit], { cwd: repo, env, maxBuffer: 2 ** 31 });
      gitArchive.push(performance.now() - t0);
      archiveBytes = out.stdout.length;

      const dest = join(dir.path, `bundle-${run}`);
      mkdirSync(dest);
      t0 = performance.now();
      const source = await fetchGitTree(`file://${repo}`, commit, { allowFileUrls: true, mirrorDir: join(dir.path, 'mirrors') });
      const built = await packFolder(dest, spec, { git: { url: `file://${repo}`, commit } }, {}, source);
      bundle.push(performance.now() - t0);
      bundleBytes = built.bytes.length;
      progress('bundle', `run ${run + 1}: git archive ${roundMs(gitArchive[run])} ms, bundle ${roundMs(bundle[run])} ms`);
    }
    const best = (xs: number[]) => Math.min(...xs);
    return {
      bench: 'bundle',
      files: o.files,
      mb: o.mb,
      runs: o.runs,
      gitArchiveMs: roundMs(best(gitArchive)),
      bundleColdMs: roundMs(bundle[0]),
      bundleMs: roundMs(best(bundle)),
      ratio: Math.round((best(bundle) / best(gitArchive)) * 100) / 100,
      target: 'bundle ≤ 1.5 × git archive --format=tar.gz',
      gitArchiveBytes: archiveBytes,
      bundleBytes,
      machine: machineInfo(),
    };
  } finally {
    dir.remove();
  }
}

if (require.main === module) {
  const [files, mb] = process.argv.slice(2).map(Number);
  runBundleBench({ ...(files ? { files } : {}), ...(mb ? { mb } : {}) })
    .then((r) => process.stdout.write(`${JSON.stringify(r)}\n`))
    .catch((err) => {
      console.error(err);
      process.exit(1);
    });
}
