import { LogMemory } from './log-memory';

describe('LogMemory: a full collection after log traffic', () => {
  function setup() {
    let delivered = 0;
    let t = 0;
    let collections = 0;
    let rss = 500;
    const m = new LogMemory(
      { stats: () => ({ tails: 0, followers: 0, liveTails: 0, windowBytes: 0, bytesDelivered: delivered, stalledReads: 0 }) },
      { checkMs: 60_000, rssBytes: 400 },
      () => collections++,
      () => t,
      () => rss,
    );
    m.stop();
    return { m, read: (n: number) => (delivered += n), wait: (ms: number) => (t += ms), setRss: (n: number) => (rss = n), collections: () => collections };
  }

  it('collects every everyBytes while reading, and once reading goes quiet', () => {
    const s = setup();
    s.read(100);
    expect(s.m.check(1000, 3000)).toBe(false);
    s.read(950);
    expect(s.m.check(1000, 3000)).toBe(true);
    s.read(10);
    s.wait(1000);
    expect(s.m.check(1000, 3000)).toBe(false);
    s.wait(3000);
    expect(s.m.check(1000, 3000)).toBe(true);
    s.wait(10_000);
    expect(s.m.check(1000, 3000)).toBe(false);
    expect(s.collections()).toBe(2);
  });

  it('while reading, collects only when the resident memory is above rssBytes; once quiet, always', () => {
    const s = setup();
    s.setRss(300);
    s.read(5000);
    expect(s.m.check(1000, 3000)).toBe(false);
    s.wait(1000);
    s.read(5000);
    expect(s.m.check(1000, 3000)).toBe(false);
    s.setRss(401);
    expect(s.m.check(1000, 3000)).toBe(true);
    s.setRss(300);
    s.read(10);
    expect(s.m.check(1000, 3000)).toBe(false);
    s.wait(3000);
    expect(s.m.check(1000, 3000)).toBe(true);
    expect(s.collections()).toBe(2);
  });

  it('does nothing without a collector (no --expose-gc)', () => {
    const m = new LogMemory({ stats: () => ({ tails: 0, followers: 0, liveTails: 0, windowBytes: 0, bytesDelivered: 5, stalledReads: 0 }) }, {}, null);
    expect(m.active).toBe(false);
    m.stop();
  });
});
