import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import type { NatsConnection } from '@nats-io/nats-core';
import { ArtifactStore } from '../../../../libs/messaging/src/artifacts-store';
import { connectNats } from '../../../../libs/messaging/src/connection';
import { startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../../../libs/testing/src';
import { workspaceArtifactCollector } from './artifact-files';

const JOB = '0b6f5a0e-2c3d-4e5f-8a9b-0c1d2e3f4a5b';

describe('workspaceArtifactCollector against a real object store', () => {
  let dir: TempDir;
  let server: RunningNatsServer;
  let nc: NatsConnection;
  let store: ArtifactStore;
  let root: string;
  let n = 0;

  beforeAll(async () => {
    dir = tempDir();
    server = await startNatsServer({ storeDir: join(dir.path, 'nats') });
    nc = await connectNats({ servers: server.url, name: 'artifacts-test' });
    store = await ArtifactStore.open(nc);
    root = join(dir.path, 'work');
    mkdirSync(root);
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
    dir?.remove();
  });

  /** A fresh workspace <root>/<attemptId> with the given files. */
  const workspace = (files: Record<string, string>): { attemptId: string; path: string } => {
    const attemptId = `ws-${++n}`;
    const path = join(root, attemptId);
    for (const [name, body] of Object.entries(files)) {
      mkdirSync(join(path, name, '..'), { recursive: true });
      writeFileSync(join(path, name), body);
    }
    mkdirSync(path, { recursive: true });
    return { attemptId, path };
  };
  const list = (bytes: Uint8Array): string => {
    const f = join(dir.path, `list-${n}.tar.gz`);
    writeFileSync(f, bytes);
    return execFileSync('tar', ['-tvzf', f], { encoding: 'utf8' });
  };

  it('stores matching files only, sorted, deterministic, with normalized modes', async () => {
    const ws = workspace({ 'out/b.txt': 'b', 'out/a.txt': 'a', 'out/run.sh': 'x', 'out/c.log': 'no', 'x.txt': 'no' });
    chmodSync(join(ws.path, 'out/run.sh'), 0o700);
    chmodSync(join(ws.path, 'out/a.txt'), 0o600);
    const collector = workspaceArtifactCollector({ root, sink: store });
    const r = await collector.collect({ jobId: JOB, attempt: 1, attemptId: ws.attemptId, outputs: ['out/*.txt', 'out/*.sh'] });
    expect(r).toEqual({ files: ['out/a.txt', 'out/b.txt', 'out/run.sh'], bytes: 3, notes: [] });
    const first = await store.get(JOB, 1);
    const listing = list(first!);
    expect(listing).toMatch(/^-rw-r--r-- 0\/0 +1 2000-01-01 00:00 out\/a\.txt\n-rw-r--r-- 0\/0 +1 2000-01-01 00:00 out\/b\.txt\n-rwxr-xr-x 0\/0 +1 2000-01-01 00:00 out\/run\.sh\n$/);
    await collector.collect({ jobId: JOB, attempt: 2, attemptId: ws.attemptId, outputs: ['out/*.txt', 'out/*.sh'] });
    expect(Buffer.from((await store.get(JOB, 2))!).equals(Buffer.from(first!))).toBe(true);
  });

  it('stores what an inside symlink points to, skips one that leaves the workspace, with a note', async () => {
    const ws = workspace({ 'real/data.txt': 'inside' });
    writeFileSync(join(dir.path, 'secret.txt'), 'outside');
    mkdirSync(join(ws.path, 'out'));
    symlinkSync('../real/data.txt', join(ws.path, 'out/in.txt'));
    symlinkSync(join(dir.path, 'secret.txt'), join(ws.path, 'out/escape.txt'));
    symlinkSync('/', join(ws.path, 'out/root'));
    const r = await workspaceArtifactCollector({ root, sink: store }).collect({ jobId: JOB, attempt: 3, attemptId: ws.attemptId, outputs: ['out/**'] });
    expect(r.files).toEqual(['out/in.txt']);
    expect(r.notes).toEqual([
      'output out/escape.txt skipped: a symlink that leaves the workspace (or points nowhere)',
      'output out/root skipped: a symlink that leaves the workspace (or points nowhere)',
    ]);
    const f = join(dir.path, 'sym.tar.gz');
    writeFileSync(f, (await store.get(JOB, 3))!);
    expect(execFileSync('tar', ['-xOzf', f, 'out/in.txt'], { encoding: 'utf8' })).toBe('inside');
  });

  it('over the size cap: nothing stored, a note says why', async () => {
    const ws = workspace({ 'out/big.bin': 'x'.repeat(2000) });
    const r = await workspaceArtifactCollector({ root, sink: store, maxBytes: 1000 }).collect({ jobId: JOB, attempt: 4, attemptId: ws.attemptId, outputs: ['out/*'] });
    expect(r.files).toEqual([]);
    expect(r.notes).toEqual(['outputs not stored: they exceed the 1000-byte artifacts limit']);
    expect(await store.get(JOB, 4)).toBeNull();
  });

  it('nothing matched: nothing stored, a note says so', async () => {
    const ws = workspace({ 'a.txt': 'a' });
    const r = await workspaceArtifactCollector({ root, sink: store }).collect({ jobId: JOB, attempt: 5, attemptId: ws.attemptId, outputs: ['out/*'] });
    expect(r.notes).toEqual(['no file matched outputs ["out/*"]']);
    expect(await store.get(JOB, 5)).toBeNull();
  });

  it('a step’s outputs are stored as <jobId>/<attempt>/<step>, apart from the attempt’s; its gate file is made once, never through a link', async () => {
    const { attemptId, path } = workspace({ 'out/a.txt': 'step one' });
    const collector = workspaceArtifactCollector({ root, sink: store });
    const r = await collector.collect({ jobId: JOB, attempt: 7, attemptId, outputs: ['out/*.txt'], step: 2 });
    expect(r.files).toEqual(['out/a.txt']);
    expect(list((await store.get(JOB, 7, 2))!)).toMatch(/ out\/a.txt\n$/);
    expect(await store.get(JOB, 7)).toBeNull();
    expect(collector.gateFolder!(attemptId)).toBe(path);
    const gate = `.jobline-step-${'a'.repeat(32)}.2`;
    await collector.openGate!(attemptId, gate);
    await collector.openGate!(attemptId, gate);
    expect(execFileSync('ls', ['-A', path], { encoding: 'utf8' })).toContain(gate);
    await expect(collector.openGate!(attemptId, '../escape')).rejects.toThrow(/not a gate file name/);
    const linked = `.jobline-step-${'b'.repeat(32)}.1`;
    symlinkSync(join(dir.path, 'victim'), join(path, linked));
    await collector.openGate!(attemptId, linked);
    expect(execFileSync('ls', [dir.path], { encoding: 'utf8' })).not.toContain('victim');
    await store.deleteJob(JOB, 7, [2]);
    expect(await store.get(JOB, 7, 2)).toBeNull();
  });
});
