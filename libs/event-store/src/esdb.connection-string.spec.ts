import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  EventStoreDbEventStore,
  eventStoreDbConnectionString,
  isEventStoreDbConnectionString,
  maskCredentials,
} from './esdb.event-store';

const ROOT = join(__dirname, '..', '..', '..');
/** Where users copy connection strings from. */
const DOCS = ['README.md', 'deploy/README.md', 'docker-compose.yml'];

/** Every concrete KurrentDB/EventStoreDB connection string in the docs (placeholders with … left out). */
function connectionStringsInDocs(): Array<{ file: string; spec: string }> {
  const found: Array<{ file: string; spec: string }> = [];
  for (const file of DOCS) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    for (const match of text.matchAll(/\b(?:esdb|kurrentdb)(?:\+discover)?:\/\/[^\s`'"|)<>…]+/g)) {
      const spec = match[0].replace(/[.,;:]+$/, '');
      if (text.slice(match.index + match[0].length).startsWith('…')) continue;
      found.push({ file, spec });
    }
  }
  return found;
}

/** Building the client parses the string and connects lazily, so no server is needed. */
async function builds(spec: string): Promise<void> {
  const store = new EventStoreDbEventStore({ connectionString: spec });
  await store.close();
}

describe('EventStoreDB/KurrentDB connection strings (maintained client, no server)', () => {
  let warn: jest.SpyInstance;
  beforeEach(() => {
    warn = jest.spyOn(console, 'warn');
  });
  afterEach(() => warn.mockRestore());

  it('every connection string the README, deploy/README.md and docker-compose.yml show parses', async () => {
    const found = connectionStringsInDocs();

    expect(found.length).toBeGreaterThanOrEqual(4);
    // The docs show the maintained spelling (older `esdb` ones in them must parse too).
    expect([...new Set(found.map((f) => f.spec.split('://')[0]))]).toEqual(expect.arrayContaining(['kurrentdb', 'kurrentdb+discover']));
    for (const { file, spec } of found) {
      await expect(builds(spec).then(() => `${file}: ok`)).resolves.toBe(`${file}: ok`);
    }
  });

  it.each([
    'kurrentdb://127.0.0.1:2113?tls=false',
    'kurrentdb://admin:changeit@localhost:2113?tls=true&tlsVerifyCert=false',
    'kurrentdb://node1:2113,node2:2113,node3:2113?tls=false&nodePreference=leader',
    'kurrentdb+discover://admin:changeit@cluster.example.com:2113?keepAliveInterval=10000',
    'esdb://127.0.0.1:2113?tls=false',
    'esdb+discover://cluster.example.com:2113',
  ])('parses %s', async (spec) => {
    expect(isEventStoreDbConnectionString(spec)).toBe(true);
    await builds(spec);
  });

  it('hands the esdb spellings to the client as kurrentdb, so no deprecation warning is printed', async () => {
    expect(eventStoreDbConnectionString('esdb://a:1?tls=false')).toBe('kurrentdb://a:1?tls=false');
    expect(eventStoreDbConnectionString('esdb+discover://u:p@a:1')).toBe('kurrentdb+discover://u:p@a:1');
    expect(eventStoreDbConnectionString('kurrentdb://a:1')).toBe('kurrentdb://a:1');

    await builds('esdb://127.0.0.1:2113?tls=false');

    expect(warn).not.toHaveBeenCalled();
  });

  it.each([
    ['another scheme', 'postgres://127.0.0.1:5432/test'],
    ['no host', 'kurrentdb://'],
    ['a bad port', 'kurrentdb://127.0.0.1:port'],
    ['an unknown option', 'kurrentdb://127.0.0.1:2113?tsl=false'],
    ['a misspelt scheme', 'esdb:/127.0.0.1:2113'],
  ])('refuses %s at construction, before any connection', (_what, spec) => {
    expect(() => new EventStoreDbEventStore({ connectionString: spec })).toThrow();
  });

  it('masks credentials for logs', () => {
    expect(maskCredentials('kurrentdb+discover://admin:s3cret@cluster:2113')).toBe('kurrentdb+discover://***@cluster:2113');
    expect(maskCredentials('kurrentdb://cluster:2113')).toBe('kurrentdb://cluster:2113');
  });
});
