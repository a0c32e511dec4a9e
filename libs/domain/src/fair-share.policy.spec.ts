import type { Priority } from '../../contracts/src';
import { FairShareQueue, NO_QUOTA, Quotas, queuedQuotaRefusal, type FairShareEntry } from './fair-share.policy';

let seq = 0;
const entry = (owner: string, jobId: string, priority: Priority = 'normal'): FairShareEntry => ({ owner, jobId, attempt: 1, priority, seq: seq++ });

/** Fills a queue with `jobs` per owner (in round-robin submission order). */
function given(quotas: Quotas, jobsPerOwner: Record<string, number>): FairShareQueue {
  const q = new FairShareQueue(quotas);
  const owners = Object.keys(jobsPerOwner);
  const most = Math.max(...Object.values(jobsPerOwner));
  for (let i = 0; i < most; i++) for (const o of owners) if (i < jobsPerOwner[o]) q.push(entry(o, `${o}-${i}`));
  return q;
}

/**
 * Runs the queue on `capacity` slots where every job takes the same time: the oldest running
 * one ends, its slot is filled again. Returns the owners in dispatch order.
 */
function dispatchOrder(q: FairShareQueue, capacity: number, dispatches: number): string[] {
  const running = new Map<string, number>();
  const slots: string[] = [];
  const order: string[] = [];
  while (order.length < dispatches) {
    while (slots.length < capacity) {
      const e = q.pop(running);
      if (!e) break;
      slots.push(e.owner);
      order.push(e.owner);
    }
    const done = slots.shift();
    if (done === undefined) break;
    running.set(done, running.get(done)! - 1);
  }
  return order.slice(0, dispatches);
}

const count = (xs: string[]) => xs.reduce<Record<string, number>>((m, x) => ({ ...m, [x]: (m[x] ?? 0) + 1 }), {});

describe('FairShareQueue', () => {
  it('given one owner, when popping, then its own queue goes high before normal before low, FIFO within a priority', () => {
    const q = new FairShareQueue();
    for (const [id, p] of [['a', 'low'], ['b', 'normal'], ['c', 'high'], ['d', 'low'], ['e', 'high'], ['f', 'normal']] as const) q.push(entry('alice', id, p));
    const popped: string[] = [];
    const running = new Map<string, number>();
    for (let e = q.pop(running); e; e = q.pop(running)) popped.push(e.jobId);
    expect(popped).toEqual(['c', 'e', 'b', 'f', 'a', 'd']);
    expect(running.get('alice')).toBe(6);
  });

  it('given priorities across owners, then a priority orders only its owner’s queue: a high job does not jump another owner’s turn', () => {
    const q = new FairShareQueue();
    q.push(entry('alice', 'a1', 'low'));
    q.push(entry('alice', 'a2', 'low'));
    q.push(entry('bob', 'b1', 'high'));
    q.push(entry('bob', 'b2', 'high'));
    const running = new Map<string, number>();
    const order = [q.pop(running), q.pop(running), q.pop(running), q.pop(running)].map((e) => e!.jobId);
    expect(order).toEqual(['a1', 'b1', 'a2', 'b2']);
  });

  it('given weights 1/1/2 and 2 slots, when many equal jobs wait, then dispatches go 1:1:2', () => {
    const q = given(new Quotas({ owners: { carol: { weight: 2 } } }), { alice: 400, bob: 400, carol: 400 });
    const shares = count(dispatchOrder(q, 2, 400));
    expect(shares.carol).toBeGreaterThanOrEqual(196);
    expect(shares.carol).toBeLessThanOrEqual(204);
    expect(Math.abs(shares.alice - shares.bob)).toBeLessThanOrEqual(2);
    expect(shares.alice + shares.bob + shares.carol).toBe(400);
  });

  it('given equal weights and 3 slots, then every window of 3 dispatches serves each owner once (round robin)', () => {
    const order = dispatchOrder(given(new Quotas(), { a: 50, b: 50, c: 50 }), 3, 150);
    for (let i = 0; i < 150; i += 3) expect(new Set(order.slice(i, i + 3)).size).toBe(3);
  });

  it('given an owner with 1000 jobs waiting first, when another submits one, then that one goes at the next free slot (no starvation)', () => {
    const q = given(new Quotas(), { alice: 1000 });
    const running = new Map<string, number>([['alice', 4]]);
    q.push(entry('bob', 'late'));
    expect(q.pop(running)).toMatchObject({ owner: 'bob', jobId: 'late' });
    expect(q.pop(running)?.owner).toBe('alice');
  });

  it('given an owner holding a slot with a long job, then the other owner gets every slot that frees up', () => {
    const q = given(new Quotas(), { alice: 100, bob: 100 });
    const running = new Map<string, number>([['alice', 1]]); // alice's long job holds one of 2 slots
    for (let i = 0; i < 50; i++) {
      const e = q.pop(running)!;
      expect(e.owner).toBe('bob');
      running.set('bob', running.get('bob')! - 1); // bob's short job ends
    }
  });

  it('given a maxRunning, then the owner never runs more, and with only its work waiting the queue gives nothing', () => {
    const q = given(new Quotas({ default: { maxRunning: 2 } }), { alice: 10, bob: 1 });
    const running = new Map<string, number>();
    const popped = [q.pop(running), q.pop(running), q.pop(running)].map((e) => e?.owner);
    expect(popped.sort()).toEqual(['alice', 'alice', 'bob']);
    expect(q.pop(running)).toBeUndefined();
    expect(q.size).toBe(8);
    expect(running.get('alice')).toBe(2);
    running.set('alice', 1);
    expect(q.pop(running)?.owner).toBe('alice');
    expect(q.pop(running)).toBeUndefined();
  });

  it('given an owner that ran alone for a while, when another joins, then they take turns at once (idle time is no credit)', () => {
    const q = given(new Quotas(), { alice: 200 });
    const running = new Map<string, number>();
    for (let i = 0; i < 100; i++) {
      q.pop(running);
      running.set('alice', 0);
    }
    for (let i = 0; i < 10; i++) q.push(entry('bob', `b${i}`));
    const next: string[] = [];
    for (let i = 0; i < 10; i++) {
      next.push(q.pop(running)!.owner);
      running.clear();
    }
    expect(count(next)).toEqual({ alice: 5, bob: 5 });
  });

  it('removes entries, counts per owner and replaces an entry pushed again', () => {
    const q = new FairShareQueue();
    q.push(entry('alice', 'x'));
    q.push(entry('alice', 'y'));
    q.push(entry('bob', 'z'));
    expect(q.queuedOf('alice')).toBe(2);
    expect(q.remove('x')).toBe(true);
    expect(q.remove('x')).toBe(false);
    q.push(entry('bob', 'z', 'high'));
    expect([q.size, q.queuedOf('alice'), q.queuedOf('bob'), q.has('y'), q.has('x')]).toEqual([2, 1, 1, true, false]);
    q.remove('z');
    const running = new Map<string, number>();
    expect(q.pop(running)?.jobId).toBe('y');
    expect(q.pop(running)).toBeUndefined();
    expect(q.size).toBe(0);
  });
});

describe('Quotas', () => {
  it('given no file, then nobody is limited and every weight is 1', () => {
    const q = new Quotas();
    expect(q.of('anyone')).toEqual(NO_QUOTA);
    expect(q.limitsQueued).toBe(false);
    expect(q.retryAfterSeconds).toBe(10);
  });

  it('given a default and an owner entry, then the owner’s fields override the default one by one', () => {
    const q = new Quotas({ default: { maxRunning: 4, maxQueued: 100 }, owners: { ci: { weight: 2, maxQueued: 5 } }, retryAfterSeconds: 3 });
    expect(q.of('ci')).toEqual({ maxRunning: 4, maxQueued: 5, weight: 2 });
    expect(q.of('bob')).toEqual({ maxRunning: 4, maxQueued: 100, weight: 1 });
    expect(q.limitsQueued).toBe(true);
    expect(q.retryAfterSeconds).toBe(3);
    expect(new Quotas({ owners: { ci: { maxQueued: 1 } } }).limitsQueued).toBe(true);
  });

  it('when an owner has maxQueued jobs waiting, then a submit is refused, saying so; below it, admitted', () => {
    const quota = { maxRunning: Infinity, maxQueued: 3, weight: 1 };
    expect(queuedQuotaRefusal('ci', quota, 2)).toBeNull();
    expect(queuedQuotaRefusal('ci', quota, 3)).toBe('owner ci has 3 job(s) waiting, its quota is 3: submit again once some have started');
    expect(queuedQuotaRefusal('ci', NO_QUOTA, 1e9)).toBeNull();
  });
});
