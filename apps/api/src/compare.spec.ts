import { compareRuns, type ComparedRun } from './compare';

const run = (over: Partial<ComparedRun> = {}): ComparedRun => ({
  id: '0b0c5a4e-58a8-4c38-9d3a-1e0f1c3e0001',
  status: 'succeeded',
  attempt: 1,
  exitCode: 0,
  logSha256: 'a'.repeat(64),
  artifactsSha256: null,
  bundleDigest: null,
  rerunOf: null,
  ...over,
});

describe('compareRuns', () => {
  it('identical: same exit code, same log digest, no artifacts on either side', () => {
    expect(compareRuns(run(), run({ id: '0b0c5a4e-58a8-4c38-9d3a-1e0f1c3e0002' }))).toMatchObject({ identical: true, differences: [], same: { exitCode: true, logSha256: true, artifacts: true } });
  });

  it('names each difference, in a fixed order', () => {
    const c = compareRuns(run({ artifactsSha256: 'c'.repeat(64) }), run({ exitCode: 1, logSha256: 'b'.repeat(64), artifactsSha256: 'd'.repeat(64) }));
    expect(c).toMatchObject({ identical: false, differences: ['exitCode', 'logSha256', 'artifacts'] });
    expect(compareRuns(run({ artifactsSha256: 'c'.repeat(64) }), run()).differences).toEqual(['artifacts']);
  });

  it('a missing log digest proves nothing: never the same, not even against another missing one', () => {
    expect(compareRuns(run({ logSha256: null }), run({ logSha256: null }))).toMatchObject({ identical: false, differences: ['logSha256'] });
    expect(compareRuns(run(), run({ logSha256: null })).same.logSha256).toBe(false);
  });
});
