import { chainLink, contentHash, streamLink } from './event-chain';
import { CHAIN_METADATA_KEY, GENESIS_HEAD, advanceChainHead, chainFromMetadata, foldChainHead, linkNewEvents } from './esdb.chain';
import type { NewEvent, RecordedEvent } from './event-store.port';

const newEvent = (id: string, type: string, data: unknown, metadata: Record<string, unknown> = { actor: 'alice' }): NewEvent => ({ id, type, data, metadata });

/** What the adapter reads back for a written event: metadata split from its link. */
function readBack(streamId: string, written: NewEvent, revision: number, position: number): RecordedEvent {
  const { metadata, chain } = chainFromMetadata(JSON.parse(JSON.stringify(written.metadata)) as Record<string, unknown>);
  return { id: written.id, streamId, revision, position, type: written.type, data: JSON.parse(JSON.stringify(written.data)), metadata, recordedAt: '2026-01-01T00:00:00.000Z', ...(chain ? { chain } : {}) };
}

describe('EventStoreDB stream links in metadata', () => {
  it('links each new event to the one before it with the stored chain formula, over data and metadata as they read back', () => {
    const at = new Date('2026-01-02T03:04:05.000Z');
    const events = [newEvent('e1', 'JobSubmitted', { at, gone: undefined, n: 1 }), newEvent('e2', 'JobQueued', [1, { b: 2, a: 1 }], { actor: 'bob', x: undefined })];
    const linked = linkNewEvents('job-1', events, 3, 'p'.repeat(64));
    const first = readBack('job-1', linked[0], 3, 100);
    const second = readBack('job-1', linked[1], 4, 120);
    expect(first.data).toEqual({ at: at.toISOString(), n: 1 });
    expect(first.metadata).toEqual({ actor: 'alice' });
    expect(second.metadata).toEqual({ actor: 'bob' });
    expect(first.chain?.streamHash).toBe(streamLink('p'.repeat(64), 3, contentHash(first)));
    expect(second.chain?.streamHash).toBe(streamLink(first.chain?.streamHash, 4, contentHash(second)));
    expect(first.chain?.chainHash).toBeUndefined();
    // The caller's events are not changed.
    expect(events[0].metadata).toEqual({ actor: 'alice' });
  });

  it('starts a stream (or follows an event recorded before the chain) from genesis', () => {
    const [linked] = linkNewEvents('job-2', [newEvent('e1', 'JobSubmitted', null)], 0, null);
    const read = readBack('job-2', linked, 0, 7);
    expect(read.chain?.streamHash).toBe(streamLink('', 0, contentHash(read)));
  });

  it('refuses metadata that already has the reserved key', () => {
    expect(() => linkNewEvents('job-3', [newEvent('e1', 'A', {}, { [CHAIN_METADATA_KEY]: { streamHash: 'a'.repeat(64) } })], 0, null)).toThrow(/reserved/);
  });

  it('reads only an exact {streamHash: sha256 hex} as a link; anything else stays metadata (unchained)', () => {
    expect(chainFromMetadata({ a: 1 })).toEqual({ metadata: { a: 1 } });
    for (const bad of [{ streamHash: 'xyz' }, { streamHash: 'a'.repeat(64), chainHash: 'b'.repeat(64) }, ['a'.repeat(64)], 'a'.repeat(64), { streamHash: 'A'.repeat(64) }]) {
      const stored = { a: 1, [CHAIN_METADATA_KEY]: bad };
      expect(chainFromMetadata(stored)).toEqual({ metadata: stored });
    }
    expect(chainFromMetadata({ a: 1, [CHAIN_METADATA_KEY]: { streamHash: 'c'.repeat(64) } })).toEqual({ metadata: { a: 1 }, chain: { streamHash: 'c'.repeat(64) } });
  });
});

describe('the computed log chain', () => {
  const events: RecordedEvent[] = [
    { id: 'a0', streamId: 'job-a', revision: 0, position: 10, type: 'A', data: 1, metadata: {}, recordedAt: '', chain: { streamHash: '1'.repeat(64) } },
    { id: 'b0', streamId: 'job-b', revision: 0, position: 25, type: 'B', data: 2, metadata: {}, recordedAt: '', chain: { streamHash: '2'.repeat(64) } },
    { id: 'old', streamId: 'job-old', revision: 4, position: 31, type: 'C', data: 3, metadata: { v: 1 }, recordedAt: '' },
  ];

  it('folds each event in with the stored chain formula over its stream link (an unchained one: its content from genesis)', () => {
    let expected = '';
    expected = chainLink(expected, 10, '1'.repeat(64));
    expected = chainLink(expected, 25, '2'.repeat(64));
    expected = chainLink(expected, 31, streamLink('', 4, contentHash(events[2])));
    expect(foldChainHead(events)).toEqual({ position: 31, chainHash: expected });
    expect(advanceChainHead(foldChainHead(events.slice(0, 2)).chainHash, events[2])).toBe(expected);
  });

  it('goes on from a head: folding in two parts is folding once', () => {
    expect(foldChainHead(events.slice(1), foldChainHead(events.slice(0, 1)))).toEqual(foldChainHead(events));
    expect(foldChainHead([], GENESIS_HEAD)).toEqual({ position: -1, chainHash: '' });
  });

  it('changes with any change of content, link, position or order', () => {
    const head = foldChainHead(events).chainHash;
    expect(foldChainHead([events[0], { ...events[1], chain: { streamHash: '3'.repeat(64) } }, events[2]]).chainHash).not.toBe(head);
    expect(foldChainHead([events[0], events[1], { ...events[2], data: 4 }]).chainHash).not.toBe(head);
    expect(foldChainHead([events[0], { ...events[1], position: 26 }, events[2]]).chainHash).not.toBe(head);
    expect(foldChainHead([events[0], events[2]]).chainHash).not.toBe(head);
  });

  it('refuses events out of position order', () => {
    expect(() => foldChainHead([events[1], events[0]])).toThrow(/does not follow/);
    expect(() => foldChainHead([events[0]], { position: 10, chainHash: '' })).toThrow(/does not follow/);
  });
});
