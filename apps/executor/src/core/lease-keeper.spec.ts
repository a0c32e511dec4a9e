import { LeaseKeeper } from './lease-keeper';

const never = new AbortController().signal;

describe('LeaseKeeper', () => {
  it('starts stale: nothing is claimed before a heartbeat sent after the start is answered', () => {
    const k = new LeaseKeeper(10_000, 1000, 100);
    expect(k.fresh).toBe(false);
    k.answered(99); // a reply to a heartbeat of before this instance's start does not count
    expect(k.fresh).toBe(false);
    k.answered(100);
    expect(k.fresh).toBe(true);
  });

  it('takes timer ticks late by more than half the lease as a pause, and is stale again until answered', () => {
    const k = new LeaseKeeper(10_000, 1000, 0);
    expect(k.tick(0)).toBe(0);
    k.answered(0);
    expect(k.tick(1000)).toBe(0);
    expect(k.tick(2000 + 4900)).toBe(0); // late, but less than half the lease: a busy loop, not a pause
    expect(k.fresh).toBe(true);
    expect(k.tick(6900 + 1000 + 6000)).toBe(6000);
    expect(k.fresh).toBe(false);
    expect(k.lastPauseAt).toBe(13_900);
    k.answered(13_000); // sent before the pause ended
    expect(k.fresh).toBe(false);
    k.answered(13_900);
    expect(k.fresh).toBe(true);
  });

  it('takes the lease the orchestrator announces', () => {
    const k = new LeaseKeeper(10_000, 500, 0);
    k.answered(0, 2000);
    expect(k.leaseMs).toBe(2000);
    k.tick(0);
    expect(k.tick(500 + 1001)).toBe(1001); // now half of 2000 is the limit
  });

  it('says whether a grant may still be acted on: no pause since the claim, less than half a lease ago', () => {
    const k = new LeaseKeeper(10_000, 1000, 0);
    expect(k.grantStillFresh(100, 5100)).toBe(true);
    expect(k.grantStillFresh(100, 5101)).toBe(false);
    k.tick(0);
    k.tick(7000);
    expect(k.grantStillFresh(100, 7001)).toBe(false); // paused after the claim was sent
    expect(k.grantStillFresh(7000, 7001)).toBe(true);
  });

  it('wakes waiters once a late enough heartbeat is answered, and gives up on a timeout or an abort', async () => {
    const k = new LeaseKeeper(10_000, 1000, 0);
    const waiting = k.answeredAfter(50, 10_000, never);
    k.answered(40);
    k.answered(60);
    await expect(waiting).resolves.toBe(true);
    await expect(k.answeredAfter(10, 10_000, never)).resolves.toBe(true);
    await expect(k.answeredAfter(100, 20, never)).resolves.toBe(false);
    const abort = new AbortController();
    const aborted = k.answeredAfter(100, 10_000, abort.signal);
    abort.abort();
    await expect(aborted).resolves.toBe(false);
  });
});
