import { AckPolicy, type JetStreamManager } from '@nats-io/jetstream';
import { createInbox, type NatsConnection, type Subscription } from '@nats-io/nats-core';
import { randomUUID } from 'node:crypto';
import { CommandRejectionSchema, CommandReplySchema, STREAMS, jobStreamName, subjects, type CommandRejection, type CommandReply } from '../../../libs/contracts/src';
import type { SqliteEventStore } from '../../../libs/event-store/src';
import { ensureStreams } from '../../../libs/messaging/src/streams';
import type { JetStreamPublisher } from '../../../libs/messaging/src/publisher';
import { eventually, startTestBus, type TestBus } from '../../../libs/testing/src';
import { ADMIN_COMMANDS_DURABLE, COMMANDS_DURABLE } from './orchestrator.module';
import { startTestOrchestrator, type TestOrchestrator } from './testing/test-orchestrator';

/** Collects what arrives on a subject, so a test can wait for the message it expects. */
class Inbox {
  readonly got: unknown[] = [];
  private readonly sub: Subscription;
  constructor(
    nc: NatsConnection,
    readonly subject: string,
  ) {
    this.sub = nc.subscribe(subject, {
      callback: (_err, m) => {
        this.got.push(m.json());
      },
    });
  }
  next<T>(pick: (m: T) => boolean, what: string): Promise<T> {
    return eventually(() => this.got.find((m) => pick(m as T)) as T | undefined, 20_000, what);
  }
  close(): void {
    this.sub.unsubscribe();
  }
}

describe('refused NATS commands are visible to their sender (real nats-server, SQLite store)', () => {
  let bus: TestBus;
  let orch: TestOrchestrator;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let store: SqliteEventStore;
  let publisher: JetStreamPublisher;
  let rejections: Inbox;

  beforeAll(async () => {
    ({ nc, jsm, publisher, store } = bus = await startTestBus('rejections-test'));
    // An earlier version's per-verb consumer, holding a command nobody handled yet: the new consumer takes it over.
    await ensureStreams(jsm);
    await jsm.consumers.add(STREAMS.commands, { durable_name: 'orchestrator-submit', ack_policy: AckPolicy.Explicit, filter_subject: 'jobline.cmd.*.submit' });
    leftOver = randomUUID();
    await publisher.publish(subjects.submit('alice'), { jobId: leftOver, spec: { command: 'true' } }, { msgId: leftOver });
    orch = await startTestOrchestrator(bus);
    rejections = new Inbox(nc, subjects.rejections('alice'));
    await nc.flush();
  });
  let leftOver: string;

  afterAll(async () => {
    rejections?.close();
    await orch?.stop();
    await bus?.stop();
  });

  const recorded = async (jobId: string) => (await store.readStream(jobStreamName(jobId))).map((r) => r.type);

  it('an invalid submit is published on jobline.rej.<owner> and answered on its reply inbox, naming the field; nothing is recorded', async () => {
    const jobId = randomUUID();
    const inbox = new Inbox(nc, createInbox());
    const replyTo = inbox.subject;
    await nc.flush();
    await publisher.publish(subjects.submit('alice'), { jobId, spec: { command: 'true', priority: 'urgent' } }, { msgId: jobId, headers: { 'Jobline-Reply-To': replyTo } });
    const rejection = await rejections.next<CommandRejection>((m) => m.jobId === jobId, 'the rejection');
    expect(CommandRejectionSchema.parse(rejection)).toEqual(rejection);
    expect(rejection).toMatchObject({ subject: 'jobline.cmd.alice.submit', jobId, code: 'invalid_argument', field: 'spec.priority' });
    expect(rejection.message).toMatch(/spec\.priority/);
    const reply = await inbox.next<CommandReply>(() => true, 'the reply');
    expect(CommandReplySchema.parse(reply)).toEqual({ ok: false, ...rejection });
    inbox.close();
    expect(await recorded(jobId)).toEqual([]);
  });

  it('a command on an unknown verb is refused the same way, and not left in the stream', async () => {
    const jobId = randomUUID();
    await publisher.publish('jobline.cmd.alice.frobnicate', { jobId }, { msgId: randomUUID() });
    const rejection = await rejections.next<CommandRejection>((m) => m.subject === 'jobline.cmd.alice.frobnicate', 'the rejection');
    expect(rejection).toEqual({ subject: 'jobline.cmd.alice.frobnicate', jobId, code: 'invalid_argument', field: '(subject)', message: expect.stringMatching(/unknown command verb 'frobnicate'/) });
    await eventually(async () => (await jsm.streams.info(STREAMS.commands)).state.messages === 0 || undefined, 10_000, 'the stream to be empty');
    expect(await recorded(jobId)).toEqual([]);
  });

  it('a rerun is refused for another owner’s job (not_found), an unfinished one (failed_precondition) and a jobId equal to rerunOf; nothing is recorded', async () => {
    const bobs = randomUUID();
    await publisher.publish(subjects.submit('bob'), { jobId: bobs, spec: { command: 'true' } }, { msgId: bobs });
    await eventually(async () => (await recorded(bobs)).includes('JobQueued') || undefined, 10_000, "bob's job to be queued");
    const asAlice = randomUUID();
    await publisher.publish(subjects.rerun('alice'), { jobId: asAlice, rerunOf: bobs }, { msgId: asAlice });
    expect(await rejections.next<CommandRejection>((m) => m.jobId === asAlice, 'the rejection')).toMatchObject({
      subject: 'jobline.cmd.alice.rerun',
      code: 'not_found',
      message: `no job ${bobs} for owner alice`,
    });
    const bobRejections = new Inbox(nc, subjects.rejections('bob'));
    await nc.flush();
    const early = randomUUID();
    await publisher.publish(subjects.rerun('bob'), { jobId: early, rerunOf: bobs }, { msgId: early });
    expect(await bobRejections.next<CommandRejection>((m) => m.jobId === early, 'the rejection')).toMatchObject({ code: 'failed_precondition', message: expect.stringMatching(/has not finished \(queued\)/) });
    await publisher.publish(subjects.rerun('bob'), { jobId: bobs, rerunOf: bobs }, { msgId: randomUUID() });
    expect(await bobRejections.next<CommandRejection>((m) => m.jobId === bobs, 'the rejection')).toMatchObject({ code: 'invalid_argument', field: 'jobId' });
    bobRejections.close();
    expect(await recorded(asAlice)).toEqual([]);
    expect(await recorded(early)).toEqual([]);
    expect(await recorded(bobs)).toEqual(['JobSubmitted', 'JobQueued']);
  });

  it('a payload that is not JSON is refused naming (payload)', async () => {
    const marker = randomUUID();
    await publisher.publish(subjects.cancel('alice'), new TextEncoder().encode(`not json ${marker}`), { msgId: marker });
    const rejection = await rejections.next<CommandRejection>((m) => m.subject === 'jobline.cmd.alice.cancel' && m.field === '(payload)', 'the rejection');
    expect(rejection).toMatchObject({ code: 'invalid_argument', message: expect.stringMatching(/not JSON/) });
  });

  it('a cancel of a job that is not there is refused with the error code of the table', async () => {
    const jobId = randomUUID();
    await publisher.publish(subjects.cancel('alice'), { jobId, reason: 'x' });
    const rejection = await rejections.next<CommandRejection>((m) => m.jobId === jobId, 'the rejection');
    expect(rejection).toMatchObject({ subject: 'jobline.cmd.alice.cancel', code: 'not_found', message: expect.stringMatching(/not found/) });
  });

  it('a Jobline-Reply-To that is not an inbox gets the command refused (nothing recorded), not a publish elsewhere', async () => {
    const jobId = randomUUID();
    const hijack = new Inbox(nc, 'jobline.evt.>');
    await nc.flush();
    await publisher.publish(subjects.submit('alice'), { jobId, spec: { command: 'true' } }, { msgId: jobId, headers: { 'Jobline-Reply-To': `jobline.evt.${jobId}.JobCompleted` } });
    const rejection = await rejections.next<CommandRejection>((m) => m.jobId === jobId, 'the rejection');
    expect(rejection).toMatchObject({ code: 'invalid_argument', field: 'Jobline-Reply-To' });
    expect(await recorded(jobId)).toEqual([]);
    expect(hijack.got).toEqual([]);
    hijack.close();
  });

  it('a recorded command is answered {ok: true} on its inbox, and is not on the rejections subject', async () => {
    const jobId = randomUUID();
    const inbox = new Inbox(nc, `_INBOX_alice.${randomUUID().replace(/-/g, '')}`);
    const replyTo = inbox.subject;
    await nc.flush();
    await publisher.publish(subjects.submit('alice'), { jobId, spec: { command: 'true' } }, { msgId: jobId, headers: { 'Jobline-Reply-To': replyTo } });
    expect(await inbox.next<CommandReply>(() => true, 'the reply')).toEqual({ ok: true, subject: 'jobline.cmd.alice.submit', jobId });
    expect(await recorded(jobId)).toContain('JobSubmitted');
    expect(rejections.got.some((m) => (m as CommandRejection).jobId === jobId)).toBe(false);
    inbox.close();
  });

  it("takes over the commands an earlier version's per-verb consumer left, and removes that consumer", async () => {
    await eventually(async () => (await recorded(leftOver)).includes('JobSubmitted') || undefined, 20_000, 'the left-over submit');
    const names: string[] = [];
    for await (const c of jsm.consumers.list(STREAMS.commands)) names.push(c.name);
    // The legacy ones are gone; the admins' commands have their own (disjoint filter, same stream).
    expect(names.sort()).toEqual([ADMIN_COMMANDS_DURABLE, COMMANDS_DURABLE].sort());
  });
});
