import { ReadyQueue } from './scheduling.policy';

describe('ReadyQueue', () => {
  it('pops high before normal before low, FIFO within a priority', () => {
    const q = new ReadyQueue();
    const order = [
      ['a', 'low'],
      ['b', 'normal'],
      ['c', 'high'],
      ['d', 'low'],
      ['e', 'high'],
      ['f', 'normal'],
    ] as const;
    order.forEach(([jobId, priority], seq) => q.push({ jobId, owner: 'alice', attempt: 1, priority, seq }));
    const popped: string[] = [];
    for (let e = q.pop(); e; e = q.pop()) popped.push(e.jobId);
    expect(popped).toEqual(['c', 'e', 'b', 'f', 'a', 'd']);
  });

  it('skips removed entries and keeps order when pushed out of order', () => {
    const q = new ReadyQueue();
    q.push({ jobId: 'x', owner: 'alice', attempt: 1, priority: 'normal', seq: 5 });
    q.push({ jobId: 'y', owner: 'alice', attempt: 1, priority: 'normal', seq: 3 });
    q.push({ jobId: 'z', owner: 'alice', attempt: 1, priority: 'normal', seq: 4 });
    expect(q.remove('z')).toBe(true);
    expect(q.size).toBe(2);
    expect(q.pop()?.jobId).toBe('y');
    expect(q.pop()?.jobId).toBe('x');
    expect(q.pop()).toBeUndefined();
  });

  it('handles many entries', () => {
    const q = new ReadyQueue();
    for (let i = 0; i < 5000; i++) q.push({ jobId: `j${i}`, owner: 'alice', attempt: 1, priority: i % 2 ? 'high' : 'low', seq: i });
    let last = -1;
    for (let i = 0; i < 2500; i++) {
      const e = q.pop()!;
      expect(e.priority).toBe('high');
      expect(e.seq).toBeGreaterThan(last);
      last = e.seq;
    }
    expect(q.pop()?.priority).toBe('low');
  });
});
