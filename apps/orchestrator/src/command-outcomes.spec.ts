import { ERROR_CODES, ERROR_TABLE, JoblineError, QuotaExceededError, ValidationError } from '../../../libs/contracts/src';
import { settlementFor } from '../../../libs/messaging/src/message-settlement';
import { commandCauseOf, commandVerbOf, rejectionOf, replyInboxOf } from './command-outcomes';

const JOB = '0b5cf6c2-8a38-4a6e-9a55-1f5b4f5e2a10';
const headers = (value: string | undefined) => ({ headers: value === undefined ? undefined : ({ get: () => value } as never) });

describe('NATS command outcomes', () => {
  it.each(ERROR_CODES)('%s: settled as ERROR_TABLE says, and a rejection carries the code', (code) => {
    const err = new JoblineError(code, `why ${code}`);
    const s = settlementFor({ ok: false, error: err }, 1, { maxDeliver: 5 });
    expect(s.action).toBe(ERROR_TABLE[code].nats === 'term' ? 'term' : 'nak');
    expect(rejectionOf('jobline.cmd.acme.submit', { jobId: JOB }, err)).toEqual({ subject: 'jobline.cmd.acme.submit', jobId: JOB, code, message: `why ${code}` });
  });

  it('a rejection names the first field and every issue; an unexpected error says internal and no more', () => {
    const err = new ValidationError('invalid submit command', [
      { path: 'spec.priority', message: 'bad option' },
      { path: 'spec.env.__proto__', message: 'reserved' },
    ]);
    expect(rejectionOf('jobline.cmd.acme.submit', { jobId: 42 }, err)).toEqual({
      subject: 'jobline.cmd.acme.submit',
      code: 'invalid_argument',
      field: 'spec.priority',
      message: 'invalid submit command: spec.priority: bad option; spec.env.__proto__: reserved',
    });
    expect(rejectionOf('jobline.cmd.acme.cancel', null, new Error('secret'))).toEqual({
      subject: 'jobline.cmd.acme.cancel',
      code: 'internal',
      message: 'the command could not be handled; the orchestrator log has the details',
    });
  });

  it('a submit refused over a quota is terminated (not redelivered) and its rejection says when to try again', () => {
    const err = new QuotaExceededError('owner acme has 5 job(s) waiting, its quota is 5', 7);
    expect(settlementFor({ ok: false, error: err }, 1, { maxDeliver: 5 }).action).toBe('term');
    expect(rejectionOf('jobline.cmd.acme.submit', { jobId: JOB }, err)).toEqual({
      subject: 'jobline.cmd.acme.submit',
      jobId: JOB,
      code: 'resource_exhausted',
      message: 'owner acme has 5 job(s) waiting, its quota is 5',
      retryAfterSeconds: 7,
    });
  });

  it('knows the verbs and refuses any other, naming (subject)', () => {
    expect(commandVerbOf('jobline.cmd.acme.cancel')).toEqual({ owner: 'acme', verb: 'cancel', admin: false });
    expect(commandVerbOf('jobline.adm.root.purge')).toEqual({ owner: 'root', verb: 'purge', admin: true });
    expect(commandVerbOf('jobline.adm.root.rerun')).toEqual({ owner: 'root', verb: 'rerun', admin: true });
    const refused = ['jobline.cmd.acme.frobnicate', 'jobline.cmd.acme', 'jobline.cmd.acme.submit.extra', 'jobline.cmd.acme.__proto__', 'jobline.adm.root.submit', 'jobline.adm.root'];
    for (const subject of refused) {
      expect(() => commandVerbOf(subject)).toThrow(ValidationError);
      try {
        commandVerbOf(subject);
      } catch (e) {
        expect((e as ValidationError).issues[0].path).toBe('(subject)');
      }
    }
  });

  it("names a command's cause: its Jobline-Request-Id, else its Nats-Msg-Id, else its stream sequence", () => {
    const msg = (h: Record<string, string>, seq = 7) => ({ seq, headers: { get: (k: string) => h[k] ?? '' } as never });
    expect(commandCauseOf(msg({ 'Jobline-Request-Id': 'req-1:a.b', 'Nats-Msg-Id': JOB }), 'JOBLINE_CMD')).toBe('req-1:a.b');
    expect(commandCauseOf(msg({ 'Nats-Msg-Id': JOB }), 'JOBLINE_CMD')).toBe(JOB);
    expect(commandCauseOf(msg({}, 42), 'JOBLINE_CMD')).toBe('JOBLINE_CMD:42');
    expect(commandCauseOf({ seq: 3, headers: undefined }, 'JOBLINE_CMD')).toBe('JOBLINE_CMD:3');
    for (const bad of ['a b', 'x'.repeat(129), 'é', 'a\nb']) {
      expect(() => commandCauseOf(msg({ 'Jobline-Request-Id': bad }), 'JOBLINE_CMD')).toThrow(ValidationError);
    }
  });

  it('takes an inbox as reply subject and refuses anything else', () => {
    expect(replyInboxOf(headers(undefined))).toBeUndefined();
    expect(replyInboxOf(headers('_INBOX.abc'))).toBe('_INBOX.abc');
    expect(replyInboxOf(headers('_INBOX_acme.abc.def'))).toBe('_INBOX_acme.abc.def');
    for (const bad of ['jobline.evt.x.JobCompleted', '_INBOX.>', '_INBOX.*', '_INBOX.a b', '$JS.API.STREAM.DELETE.JOBLINE_EVT', '_INBOX']) {
      expect(() => replyInboxOf(headers(bad))).toThrow(/Jobline-Reply-To must name an inbox/);
    }
  });
});
