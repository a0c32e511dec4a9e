import { JobSpecSchema, StaleAttemptError, ValidationError, type JobEvent, type JobView, type StepFinishedData } from '../../contracts/src';
import { deciderSpec } from '../../testing/src/decider-spec';
import { decide, evolve, initialState, type JobCommand } from './job.decider';
import { evolveJobView } from './job-view.projection';

/** Staged pipelines (README "Staged pipelines"): step reports → JobStepStarted / JobStepFinished → the view's steps. */

const given = deciderSpec<JobCommand, JobEvent, ReturnType<typeof initialState>>({ decide, evolve, initialState });

const T0 = '2026-01-01T00:00:00.000Z';
const T1 = '2026-01-01T00:00:01.000Z';
const T2 = '2026-01-01T00:00:02.000Z';
const T3 = '2026-01-01T00:00:03.000Z';
const jobId = '0b0c5a4e-58a8-4c38-9d3a-1e0f1c3e0002';
const spec = JobSpecSchema.parse({
  steps: [
    { name: 'build', run: 'make' },
    { name: 'lint', run: 'make lint', continueOnFailure: true },
    { name: 'test', run: 'make test', outputs: ['reports/*.xml'] },
  ],
  retry: { maxAttempts: 2 },
});

const submitted: JobEvent = { type: 'JobSubmitted', data: { jobId, owner: 'alice', spec, priority: 'normal', submittedAt: T0 } };
const queued = (attempt = 1): JobEvent => ({ type: 'JobQueued', data: { attempt, priority: 'normal', queuedAt: T0 } });
const dispatched = (attempt = 1): JobEvent => ({ type: 'JobDispatched', data: { attempt, executorId: 'e1', dispatchedAt: T0 } });
const started = (attempt = 1): JobEvent => ({ type: 'JobStarted', data: { attempt, executorId: 'e1', startedAt: T1, sandbox: 'none' } });
const running = (): JobEvent[] => [submitted, queued(), dispatched(), started()];

const stepStarted = (step: number, name: string, logOffset: number, attempt = 1) => ({ attempt, step, name, startedAt: T1, logOffset });
const stepFinished = (step: number, name: string, exitCode: number, logOffset: number, logEnd: number, attempt = 1, extra: Partial<StepFinishedData> = {}): StepFinishedData => ({
  attempt,
  step,
  name,
  exitCode,
  startedAt: T1,
  finishedAt: T2,
  durationMs: 1000,
  logOffset,
  logEnd,
  continueOnFailure: step === 2,
  ...extra,
});
const finishedCmd = (exitCode: number, steps?: StepFinishedData[], attempt = 1): JobCommand => ({
  type: 'RecordFinished',
  data: { attempt, exitCode, signal: null, oomKilled: false, durationMs: 5, finishedAt: T3, usage: null, logBytes: 300, ...(steps ? { steps } : {}) },
});
const completed = (exitCode: number, attempt = 1): JobEvent => ({
  type: 'JobCompleted',
  data: { attempt, exitCode, signal: null, oomKilled: false, durationMs: 5, finishedAt: T3, usage: null, logBytes: 300 },
});

describe('staged pipelines: the decider', () => {
  it('records a step start of the running attempt', () =>
    given(running()).when({ type: 'RecordStepStarted', data: stepStarted(1, 'build', 0) }).then([{ type: 'JobStepStarted', data: stepStarted(1, 'build', 0) }]));

  it('records a step end, and a repeated report of either changes nothing', () => {
    const s: JobEvent = { type: 'JobStepStarted', data: stepStarted(1, 'build', 0) };
    const f: JobEvent = { type: 'JobStepFinished', data: stepFinished(1, 'build', 0, 0, 40) };
    given([...running(), s]).when({ type: 'RecordStepFinished', data: stepFinished(1, 'build', 0, 0, 40) }).then([f]);
    given([...running(), s]).when({ type: 'RecordStepStarted', data: stepStarted(1, 'build', 0) }).thenNothing();
    given([...running(), s, f]).when({ type: 'RecordStepFinished', data: stepFinished(1, 'build', 0, 0, 40) }).thenNothing();
    // A start report that arrives after its end report (they travel apart) is not recorded after it.
    given([...running(), f]).when({ type: 'RecordStepStarted', data: stepStarted(1, 'build', 0) }).thenNothing();
  });

  it('refuses a step the spec does not have, or a name that is not its name', () => {
    given(running()).when({ type: 'RecordStepStarted', data: stepStarted(4, 'deploy', 0) }).thenThrows(ValidationError);
    given(running()).when({ type: 'RecordStepStarted', data: stepStarted(2, 'build', 0) }).thenThrows(ValidationError);
    given(running()).when({ type: 'RecordStepStarted', data: stepStarted(0, 'build', 0) }).thenThrows(ValidationError);
  });

  it('fences step reports of an attempt that is not current, or of one not started', () => {
    given([submitted, queued(), dispatched()]).when({ type: 'RecordStepStarted', data: stepStarted(1, 'build', 0) }).thenThrows(StaleAttemptError);
    given([...running(), completed(1), { type: 'JobRetryScheduled', data: { nextAttempt: 2, retryAt: T3, reason: 'exit code 1' } }, queued(2), dispatched(2), started(2)])
      .when({ type: 'RecordStepStarted', data: stepStarted(1, 'build', 0, 1) })
      .thenThrows(StaleAttemptError);
  });

  it('ignores a step report that arrives after its attempt ended (the end report carried the steps)', () =>
    given([...running(), completed(0)]).when({ type: 'RecordStepFinished', data: stepFinished(3, 'test', 0, 100, 300) }).thenNothing());

  it('records the steps an end report names that are not recorded yet (their start too, when its report has not come), before the end', () => {
    const f1 = stepFinished(1, 'build', 0, 0, 40);
    const f2 = stepFinished(2, 'lint', 3, 40, 90);
    const f3 = stepFinished(3, 'test', 0, 90, 300);
    given([...running(), { type: 'JobStepStarted', data: stepStarted(1, 'build', 0) }, { type: 'JobStepFinished', data: f1 }, { type: 'JobStepStarted', data: stepStarted(2, 'lint', 40) }])
      .when(finishedCmd(0, [f1, f2, f3]))
      .then([{ type: 'JobStepFinished', data: f2 }, { type: 'JobStepStarted', data: stepStarted(3, 'test', 90) }, { type: 'JobStepFinished', data: f3 }, completed(0)]);
  });

  it('drops steps of an end report that the spec does not have, or of another attempt; the end itself is recorded', () => {
    const bogus = [stepFinished(9, 'deploy', 0, 0, 1), stepFinished(1, 'not-build', 0, 0, 1), stepFinished(1, 'build', 0, 0, 1, 2)];
    given(running()).when(finishedCmd(0, bogus)).then([completed(0)]);
  });

  it('records the steps of a cancelled attempt before its JobCancelled', () => {
    const f1 = stepFinished(1, 'build', 143, 0, 40, 1, { interrupted: true });
    const events = given([...running(), { type: 'JobCancelRequested', data: { requestedBy: 'alice', requestedAt: T2 } }]).when(finishedCmd(143, [f1])).events();
    expect(events.map((e) => e.type)).toEqual(['JobStepStarted', 'JobStepFinished', 'JobCancelled']);
  });

  it('a new attempt starts its steps afresh', () => {
    const f1: JobEvent = { type: 'JobStepFinished', data: stepFinished(1, 'build', 2, 0, 40) };
    const retried = [...running(), f1, completed(2), { type: 'JobRetryScheduled', data: { nextAttempt: 2, retryAt: T3, reason: 'exit code 2' } } as JobEvent, queued(2), dispatched(2), started(2)];
    given(retried).when({ type: 'RecordStepStarted', data: stepStarted(1, 'build', 0, 2) }).then([{ type: 'JobStepStarted', data: stepStarted(1, 'build', 0, 2) }]);
  });
});

const view = (events: JobEvent[]): JobView => events.reduce<JobView | null>((v, e) => evolveJobView(v, e), null)!;

describe('staged pipelines: the job view', () => {
  it('lists the steps of a staged job as pending at submission, none for a command job', () => {
    expect(view([submitted]).steps).toEqual([
      expect.objectContaining({ step: 1, name: 'build', status: 'pending', continueOnFailure: false, exitCode: null, logOffset: null }),
      expect.objectContaining({ step: 2, name: 'lint', status: 'pending', continueOnFailure: true }),
      expect.objectContaining({ step: 3, name: 'test', status: 'pending' }),
    ]);
    const plain = JobSpecSchema.parse({ command: 'true' });
    expect(view([{ type: 'JobSubmitted', data: { jobId, owner: 'alice', spec: plain, priority: 'normal', submittedAt: T0 } }]).steps).toBeUndefined();
  });

  it('shows a running step with its log offset, then its result and log range', () => {
    const s1: JobEvent = { type: 'JobStepStarted', data: stepStarted(1, 'build', 0) };
    expect(view([...running(), s1]).steps![0]).toMatchObject({ status: 'running', startedAt: T1, logOffset: 0, logEnd: null });
    const f1: JobEvent = { type: 'JobStepFinished', data: stepFinished(1, 'build', 0, 0, 40) };
    expect(view([...running(), s1, f1]).steps![0]).toMatchObject({ status: 'succeeded', exitCode: 0, finishedAt: T2, durationMs: 1000, logOffset: 0, logEnd: 40 });
  });

  it('a failed continueOnFailure step stays failed in a succeeded job; the steps after it ran', () => {
    const events: JobEvent[] = [
      ...running(),
      { type: 'JobStepFinished', data: stepFinished(1, 'build', 0, 0, 40) },
      { type: 'JobStepFinished', data: stepFinished(2, 'lint', 3, 40, 90) },
      { type: 'JobStepFinished', data: stepFinished(3, 'test', 0, 90, 300, 1, { artifacts: { files: 1, bytes: 12 } }) },
      completed(0),
    ];
    const v = view(events);
    expect(v.status).toBe('succeeded');
    expect(v.steps!.map((s) => [s.status, s.exitCode])).toEqual([
      ['succeeded', 0],
      ['failed', 3],
      ['succeeded', 0],
    ]);
    expect(v.steps!.map((s) => s.artifacts)).toEqual([null, null, { files: 1, bytes: 12 }]);
  });

  it('once the job ends, steps never reached are skipped and one left running is failed and interrupted', () => {
    const events: JobEvent[] = [
      ...running(),
      { type: 'JobStepFinished', data: stepFinished(1, 'build', 0, 0, 40) },
      { type: 'JobStepStarted', data: stepStarted(2, 'lint', 40) },
      { type: 'JobTimedOut', data: { attempt: 1, timeoutSeconds: 1, finishedAt: T3 } },
    ];
    expect(view(events).steps!.map((s) => [s.status, s.interrupted])).toEqual([
      ['succeeded', false],
      ['failed', true],
      ['skipped', false],
    ]);
  });

  it('a retry shows the new attempt’s steps from pending; a late report of the old attempt changes nothing', () => {
    const events: JobEvent[] = [
      ...running(),
      { type: 'JobStepFinished', data: stepFinished(1, 'build', 2, 0, 40) },
      completed(2),
      { type: 'JobRetryScheduled', data: { nextAttempt: 2, retryAt: T3, reason: 'exit code 2' } },
      queued(2),
      dispatched(2),
    ];
    expect(view(events).steps!.map((s) => s.status)).toEqual(['pending', 'pending', 'pending']);
    expect(view([...events, { type: 'JobStepStarted', data: stepStarted(1, 'build', 0, 1) }]).steps![0].status).toBe('pending');
    expect(view([...events, started(2), { type: 'JobStepStarted', data: stepStarted(1, 'build', 0, 2) }]).steps![0].status).toBe('running');
  });
});
