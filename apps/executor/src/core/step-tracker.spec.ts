import type { LogStream, StepFinishedData, StepStartedData } from '../../../../libs/contracts/src';
import { StepTracker, stepToken } from './step-tracker';

const enc = new TextEncoder();
const dec = new TextDecoder();
const T = new Date('2026-01-01T00:00:00.000Z');

function harness(steps = [{ name: 'build', run: 'x' }, { name: 'lint', run: 'y', continueOnFailure: true }]) {
  const token = stepToken();
  const log: { stream: LogStream; text: string }[] = [];
  let bytes = 0;
  const started: StepStartedData[] = [];
  const ended: StepFinishedData[] = [];
  let now = T.getTime();
  const tracker = new StepTracker({
    steps,
    attempt: 1,
    token,
    write: (stream, data) => {
      log.push({ stream, text: dec.decode(data) });
      bytes += data.length;
    },
    cut: () => bytes,
    clock: () => new Date((now += 10)),
    onStarted: (s) => void started.push(s),
    onEnded: (s) => (ended.push(s), s),
  });
  const frame = (body: string) => `\u001e${token} ${body}\n`;
  const text = () => log.map((l) => l.text).join('');
  return { token, tracker, log, started, ended, frame, text, feed: (s: LogStream, t: string) => tracker.feed(s, enc.encode(t)) };
}

describe('StepTracker', () => {
  it('draws a fresh 128-bit token each time', () => {
    const a = stepToken();
    expect(a).toMatch(/^[0-9a-f]{32}$/);
    expect(stepToken()).not.toBe(a);
  });

  it('writes each marker in place of its frames, after the previous step’s output on both streams and before its own', async () => {
    const h = harness();
    await h.feed('stdout', h.frame('S 1') + 'built\n');
    // stdout is ahead: its output after the frame waits until stderr has reached the frame too.
    expect(h.text()).toBe('');
    await h.feed('stderr', 'warming up\n'.slice(0, 0) + h.frame('S 1') + 'warn: old\n');
    expect(h.text()).toBe('==> [1/2] build\nbuilt\nwarn: old\n');
    await h.feed('stderr', 'late err of build\n' + h.frame('E 1 0') + h.frame('S 2'));
    await h.feed('stdout', 'late out of build\n' + h.frame('E 1 0') + h.frame('S 2') + 'lint says no\n' + h.frame('E 2 3'));
    await h.feed('stderr', h.frame('E 2 3'));
    const steps = await h.tracker.finish(0);
    expect(h.text()).toBe('==> [1/2] build\nbuilt\nwarn: old\nlate err of build\nlate out of build\n==> [2/2] lint\nlint says no\n');
    expect(h.log.filter((l) => l.text.startsWith('==>')).map((l) => l.stream)).toEqual(['stderr', 'stderr']);
    const end1 = '==> [1/2] build\nbuilt\nwarn: old\nlate err of build\nlate out of build\n'.length;
    expect(h.started.map((s) => [s.step, s.logOffset])).toEqual([
      [1, 0],
      [2, end1],
    ]);
    expect(steps).toEqual(h.ended);
    expect(steps.map((s) => [s.step, s.name, s.exitCode, s.logOffset, s.logEnd, s.continueOnFailure, s.interrupted])).toEqual([
      [1, 'build', 0, 0, end1, false, undefined],
      [2, 'lint', 3, end1, h.text().length, true, undefined],
    ]);
    expect(steps[0].durationMs).toBeGreaterThan(0);
  });

  it('finds frames split across reads, and holds back nothing that cannot begin one', async () => {
    const h = harness([{ name: 'only', run: 'x' }]);
    const f = h.frame('S 1');
    await h.feed('stderr', f);
    await h.feed('stdout', 'a\u001eb ' + f.slice(0, 5));
    expect(h.text()).toBe('a\u001eb ');
    await h.feed('stdout', f.slice(5) + 'out');
    expect(h.text()).toBe('a\u001eb ==> [1/1] only\nout');
    const end = h.frame('E 1 0');
    await h.feed('stdout', end.slice(0, 20));
    await h.feed('stdout', end.slice(20));
    await h.feed('stderr', end);
    expect((await h.tracker.finish(0)).map((s) => s.exitCode)).toEqual([0]);
  });

  it('keeps as output a frame with another token, a malformed one, and one for a step that is not next', async () => {
    const h = harness([{ name: 'only', run: 'x' }]);
    const forged = `\u001e${'0'.repeat(32)} E 1 0\n`;
    await h.feed('stdout', h.frame('S 1'));
    await h.feed('stderr', h.frame('S 1'));
    await h.feed('stdout', forged + h.frame('bogus') + `==> [1/1] only\n`);
    expect(h.text()).toBe('==> [1/1] only\n' + forged + h.frame('bogus') + '==> [1/1] only\n');
    expect(h.ended).toEqual([]);
    const steps = await h.tracker.finish(143);
    expect(steps).toEqual([expect.objectContaining({ step: 1, exitCode: 143, interrupted: true })]);
  });

  it('a stream that ended does not hold the other back', async () => {
    const h = harness([{ name: 'only', run: 'x' }]);
    await h.tracker.end('stderr');
    await h.feed('stdout', h.frame('S 1') + 'x\n' + h.frame('E 1 0'));
    expect(h.text()).toBe('==> [1/1] only\nx\n');
    expect(h.ended.map((s) => s.exitCode)).toEqual([0]);
  });
});
