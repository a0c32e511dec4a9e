import { DEFAULT_FILTERS, filtersFromSearch, filtersToSearch, fromLocalInput, listQuery, mayMatch, toLocalInput } from './jobs-query';

describe('jobs view filters', () => {
  it('round-trip through the page URL, defaults left out', () => {
    const f = { ...DEFAULT_FILTERS, status: ['running', 'failed'] as const, priority: ['high'] as const, executor: 'local', from: '2025-01-31T12:00:00.000Z', order: 'submittedAt' as const, limit: 50 };
    const search = filtersToSearch({ ...f, status: [...f.status], priority: [...f.priority] });
    expect(search).toBe('?status=running%2Cfailed&priority=high&executor=local&from=2025-01-31T12%3A00%3A00.000Z&order=submittedAt&limit=50');
    expect(filtersFromSearch(search)).toEqual({ ...f, status: ['running', 'failed'], priority: ['high'] });
    expect(filtersToSearch(DEFAULT_FILTERS)).toBe('');
  });

  it('drop what is unknown or malformed instead of sending it', () => {
    expect(filtersFromSearch('?status=running,bogus&priority=urgent&owner=a%20b&limit=1000&order=x&from=yesterday')).toEqual({ ...DEFAULT_FILTERS, status: ['running'] });
  });

  it('become the api query, with the time range as submittedFrom/submittedTo', () => {
    const q = new URLSearchParams(listQuery({ ...DEFAULT_FILTERS, owner: 'bob', from: '2025-01-01T00:00:00.000Z', to: '2025-01-02T00:00:00.000Z' }, 'CUR'));
    expect(Object.fromEntries(q)).toEqual({ owner: 'bob', submittedFrom: '2025-01-01T00:00:00.000Z', submittedTo: '2025-01-02T00:00:00.000Z', order: '-submittedAt', limit: '20', cursor: 'CUR' });
  });

  it('tell whether a status frame may belong to the filtered list', () => {
    expect(mayMatch({ ...DEFAULT_FILTERS, status: ['running'] }, { status: 'queued' })).toBe(false);
    expect(mayMatch({ ...DEFAULT_FILTERS, status: ['running'] }, { status: 'running' })).toBe(true);
    expect(mayMatch({ ...DEFAULT_FILTERS, owner: 'a' }, { status: 'running', owner: 'b' })).toBe(false);
  });

  it('convert datetime-local values to instants and back', () => {
    const iso = fromLocalInput('2025-03-04T05:06');
    expect(iso).toBe(new Date(2025, 2, 4, 5, 6).toISOString());
    expect(toLocalInput(iso)).toBe('2025-03-04T05:06');
    expect(fromLocalInput('')).toBe('');
  });
});
