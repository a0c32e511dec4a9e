import type { NatsConnection } from '@nats-io/nats-core';
import { join } from 'node:path';
import { eventually, startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../testing/src';
import { connectNats } from './connection';
import { LeaderLease } from './leader-lease';

const LEASE_MS = 1000;

/** A candidate with its own connection, and a record of when it believed it led. */
interface Candidate {
  id: string;
  nc: NatsConnection;
  lease: LeaderLease;
  changes: boolean[];
}

describe('LeaderLease (NATS KV, revision as the fencing token)', () => {
  let dir: TempDir;
  let server: RunningNatsServer;
  const open: Candidate[] = [];

  beforeAll(async () => {
    dir = tempDir();
    server = await startNatsServer({ storeDir: join(dir.path, 'nats') });
  });
  afterAll(async () => {
    for (const c of open) {
      await c.lease.stop().catch(() => undefined);
      await c.nc.close().catch(() => undefined);
    }
    await server?.stop();
    dir?.remove();
  });

  async function candidate(id: string, opts: { monotonic?: () => number } = {}): Promise<Candidate> {
    const nc = await connectNats({ servers: server.url, name: id });
    const changes: boolean[] = [];
    const lease = new LeaderLease({ nc, id, leaseMs: LEASE_MS, onChange: (l) => changes.push(l), ...opts });
    const c = { id, nc, lease, changes };
    open.push(c);
    return c;
  }

  /** Samples every 5 ms until `until` resolves; fails if two candidates ever both say they lead. */
  async function neverTwo(cands: Candidate[], until: Promise<unknown>): Promise<void> {
    let done = false;
    void until.finally(() => (done = true));
    while (!done) {
      const leading = cands.filter((c) => c.lease.isLeader()).map((c) => c.id);
      expect(leading.length).toBeLessThanOrEqual(1);
      await new Promise((r) => setTimeout(r, 5));
    }
    await until;
  }

  it('one of three leads; a stopped leader releases it and another takes over at once', async () => {
    const cands = await Promise.all(['a', 'b', 'c'].map((id) => candidate(`one-${id}`)));
    await Promise.all(cands.map((c) => c.lease.start()));
    await eventually(() => cands.filter((c) => c.lease.isLeader()).length === 1, 5000, 'one leader');
    const first = cands.find((c) => c.lease.isLeader())!;
    expect(first.changes).toEqual([true]);
    await eventually(() => cands.every((c) => c.lease.holder?.id === first.id), 5000, 'every candidate to know the holder');

    const t0 = performance.now();
    await first.lease.stop();
    expect(first.lease.isLeader()).toBe(false);
    expect(first.changes).toEqual([true, false]);
    const rest = cands.filter((c) => c !== first);
    await neverTwo(rest, eventually(() => rest.some((c) => c.lease.isLeader()), 5000, 'a new leader'));
    // Released: no need to wait out the lease.
    expect(performance.now() - t0).toBeLessThan(LEASE_MS);
    for (const c of rest) await c.lease.stop();
  });

  it('a leader cut off the bus stops acting by its own clock before a standby takes over, within a lease and a bit', async () => {
    const a = await candidate('cut-a');
    await a.lease.start();
    expect(a.lease.isLeader()).toBe(true);
    const b = await candidate('cut-b');
    await b.lease.start();
    expect(b.lease.isLeader()).toBe(false);

    // a's connection goes: it renews no more, and nobody tells it.
    const t0 = performance.now();
    await a.nc.close();
    let aStoppedAt = 0;
    let bLedAt = 0;
    await neverTwo(
      [a, b],
      eventually(() => {
        if (!aStoppedAt && !a.lease.isLeader()) aStoppedAt = performance.now();
        if (!bLedAt && b.lease.isLeader()) bLedAt = performance.now();
        return aStoppedAt > 0 && bLedAt > 0;
      }, 10_000, 'b to take over'),
    );
    expect(aStoppedAt).toBeLessThan(bLedAt);
    expect(bLedAt - t0).toBeLessThan(LEASE_MS + 1000);
    await b.lease.stop();
  });

  it('a leader whose clock shows it was paused past its lease stops acting at once, before any renewal; one of the two leads again, never both', async () => {
    let jump = 0;
    const a = await candidate('pause-a', { monotonic: () => performance.now() + jump });
    await a.lease.start();
    const b = await candidate('pause-b');
    await b.lease.start();
    expect(a.lease.isLeader()).toBe(true);
    // What a SIGSTOP past the lease looks like from inside on waking: the monotonic clock moved on.
    jump = 2 * LEASE_MS;
    expect(a.lease.isLeader()).toBe(false);
    await neverTwo([a, b], eventually(() => a.lease.isLeader() || b.lease.isLeader(), 3 * LEASE_MS + 1000, 'a leader again'));
    expect(a.changes.slice(0, 2)).toEqual([true, false]);
    await neverTwo([a, b], new Promise((r) => setTimeout(r, LEASE_MS)));
    await a.lease.stop();
    await b.lease.stop();
  });

  it('refuses a lease shorter than 100 ms', async () => {
    const nc = await connectNats({ servers: server.url, name: 'short' });
    try {
      expect(() => new LeaderLease({ nc, id: 'x', leaseMs: 50, onChange: () => undefined })).toThrow(/at least 100/);
    } finally {
      await nc.close();
    }
  });
});
