import { Inject, Injectable } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import {
  ExecutorIdSchema,
  newTimeOrderedId,
  IllegalStateError,
  JOB_STATUSES,
  JoblineError,
  NotFoundError,
  OwnerSchema,
  Priority,
  UnknownEventError,
  ValidationError,
  decodeJobEvent,
  isJobId,
  COMMAND_REPLY_HEADER,
  CommandReplySchema,
  REQUEST_ID_HEADER,
  isErrorCode,
  isTerminal,
  jobStreamName,
  parseJobSpec,
  subjects,
  webhookDeliveries,
  type AdminCommandVerb,
  type CancelJobMessage,
  type JobSpec,
  type JobStatus,
  type JobView,
  type CommandReply,
  type PurgeJobMessage,
  type RerunJobMessage,
  type StoredJobEvent,
  type SubmitJobMessage,
  type WebhookDeliveryView,
} from '../../../libs/contracts/src';
import { readWebhookAttempts } from '../../../libs/messaging/src/webhook-attempts';
import { evolveJobView, needsBundle } from '../../../libs/domain/src';
import type { RecordedEvent } from '../../../libs/event-store/src/event-store.port';
import { API_CONTEXT, type ApiContext } from './api.context';
import type { Caller } from './api-tokens';
import { instantParam, intParam, listOfParam, listParam, parseQuery, pastInstantParam } from './http/query';
import { jobIdForKey, parseIdempotencyKey } from './idempotency';
import { DEFAULT_LIMIT, JOB_ORDERS, MAX_LIMIT, MAX_TIMELINE_BUCKETS, type JobOrder, type JobsPage, type TimelineBucket } from './projections/jobs.projection';
import { UploadStore } from '../../../libs/messaging/src/bundle-store';
import { ArtifactStore } from '../../../libs/messaging/src/artifacts-store';
import { createInbox } from '@nats-io/nats-core';
import { createHash } from 'node:crypto';
import { compareRuns, comparedRun, type JobComparison } from './compare';
import type { ArchiveUpload } from './http/submit-body';
import type { PastState } from './history/past-states';

// Exported: the OpenAPI document (openapi/openapi.document.ts) is generated from these.
export const ListQuerySchema = z.strictObject({
  status: listParam(JOB_STATUSES).optional().describe('Only jobs in these statuses.'),
  priority: listParam(Priority.options).optional().describe('Only jobs of these priorities.'),
  owner: OwnerSchema.optional().describe("Only this owner's jobs (admins; a non-admin may only name itself)."),
  executor: listOfParam(ExecutorIdSchema, 50).optional().describe('Only jobs whose latest attempt ran on one of these executors.'),
  submittedFrom: instantParam().optional().describe('Only jobs submitted at or after this instant.'),
  submittedTo: instantParam().optional().describe('Only jobs submitted before this instant.'),
  limit: intParam(1, MAX_LIMIT).optional().describe(`Items per page (default ${DEFAULT_LIMIT}).`),
  cursor: z.string().min(1).max(512).optional().describe("The previous page's nextCursor (same filters and order)."),
  order: z.enum(JOB_ORDERS as unknown as [JobOrder, ...JobOrder[]]).optional().describe('Sort order (default -submittedAt).'),
  at: pastInstantParam()
    .optional()
    .describe(
      'The list as it stood at this instant (RFC 3339, not before the epoch, not in the future): every event the store had recorded by then, folded like the live list, with the same filters, order and paging (pass the same `at` with the cursor).',
    ),
});

export const GetQuerySchema = z.strictObject({
  at: pastInstantParam()
    .optional()
    .describe('The job as it stood at this instant (RFC 3339, not before the epoch, not in the future), replayed from its history by its events\' times (404 before its submission).'),
});

export const ExecutorsQuerySchema = z.strictObject({
  at: pastInstantParam()
    .optional()
    .describe(
      'Instead of the executors heard from now: which jobs were on each executor at this instant (RFC 3339, not before the epoch, not in the future), from the events the store had recorded by then.',
    ),
});

export const StatsQuerySchema = z.strictObject({ owner: OwnerSchema.optional().describe("Only this owner's jobs (admins).") });

export const TimelineQuerySchema = z.strictObject({
  from: instantParam().optional().describe('Start of the first bucket (default: `to` minus 60 buckets).'),
  to: instantParam().optional().describe('End of the timeline, exclusive (default: now).'),
  bucket: intParam(1, 31 * 24 * 3600).optional().describe('Bucket width in seconds (default 60).'),
  owner: OwnerSchema.optional().describe("Only this owner's jobs (admins)."),
});

export const CancelBodySchema = z.strictObject({ reason: z.string().min(1).max(1024).optional().describe('Recorded in JobCancelRequested.') }).optional();

export interface SubmitResult {
  /** False when an Idempotency-Key named a job that already existed. */
  created: boolean;
  job: JobView;
}

/** One entry of GET /v1/jobs/{id}/events. */
export interface JobEventItem {
  position: number;
  id: string;
  type: string;
  version: number;
  occurredAt: string;
  actor: string;
  /** The id of the event or command that caused this one (null for a submission). */
  causationId: string | null;
  correlationId: string | null;
  data: unknown;
}

export interface JobTimeline {
  from: string;
  to: string;
  bucketSeconds: number;
  buckets: (Omit<TimelineBucket, 'start'> & { start: string })[];
}

/** One executor at an instant, as the job history knows it: from the JobDispatched of the attempts on it. */
export interface ExecutorWork {
  id: string;
  /** Attempts dispatched to it or running on it then, of every owner (GET /v1/executors counts them the same way). */
  running: number;
  /** Those of the caller's jobs (an admin: every job), oldest submission first. */
  jobs: JobView[];
}

/** GET /v1/executors?at=: the executors that had work at `at`, and the jobs waiting for one. */
export interface ExecutorsAt {
  at: string;
  /** The newest store position recorded by then (-1: none yet); the state is the log up to it. */
  position: number;
  /** The caller's jobs (an admin: every job) queued then, waiting for an executor: `GET /v1/jobs?at=…&status=queued` lists them. */
  queued: number;
  items: ExecutorWork[];
}

export interface JobStats {
  total: number;
  byStatus: Record<JobStatus, number>;
}

/**
 * Where the api sends a cancel, purge or re-run: the owner's own on `jobline.cmd.<owner>.<verb>`,
 * an admin's of another owner's job on `jobline.adm.<admin>.<verb>`. The orchestrator's decider
 * checks who may, and records the caller as the actor either way.
 */
function commandSubject(caller: Caller, jobOwner: string, verb: AdminCommandVerb): string {
  return caller.owner === jobOwner ? subjects[verb](jobOwner) : subjects.adminCommand(caller.owner, verb);
}

/**
 * The api's job use cases. Writes are commands published on `jobline.cmd.<owner>.*`
 * (the orchestrator records them); reads come from the jobs projection or the store.
 * Another owner's job is reported exactly like a job that does not exist.
 */
@Injectable()
export class JobsService {
  constructor(@Inject(API_CONTEXT) private readonly ctx: ApiContext) {}

  private uploads: Promise<UploadStore> | null = null;
  private artifacts: Promise<ArtifactStore> | null = null;

  /**
   * `archive`: the source uploaded with a multipart submission, still streaming (spec.source
   * must be {archive: true}). It is stored as it arrives, after the spec was validated; a
   * submission refused before that reads and drops it.
   */
  async submit(caller: Caller, body: unknown, idempotencyKeyHeader: string | string[] | undefined, archive?: ArchiveUpload, requestId: string = randomUUID()): Promise<SubmitResult> {
    let stored = false;
    try {
      const key = parseIdempotencyKey(idempotencyKeyHeader);
      if (body === undefined) throw new ValidationError('the request body is empty: expected a JobSpec as JSON', [{ path: '(body)', message: 'required' }]);
      const parsed = parseJobSpec(body);
      if (!parsed.ok) throw new ValidationError('invalid job spec', parsed.issues);
      const spec = parsed.value;
      const wantsArchive = spec.source !== undefined && 'archive' in spec.source;
      if (wantsArchive && !archive) throw new ValidationError('source.archive needs the archive: submit multipart/form-data with spec and archive parts', [{ path: 'source.archive', message: 'no archive part' }]);
      if (archive && !wantsArchive) throw new ValidationError('an archive was uploaded but the spec does not say source: {archive: true}', [{ path: 'source', message: 'must be {archive: true} with an archive part' }]);
      const jobId = key === undefined ? newTimeOrderedId() : jobIdForKey(caller.owner, key);
      if (key !== undefined) {
        const existing = this.ctx.projection.get(jobId);
        if (existing) return { created: false, job: sameSubmission(existing, caller, key, spec) };
      }
      this.requireBus();
      if (archive) {
        // Stored before the submission is published: the packager finds it as soon as it hears of the job.
        this.uploads ??= UploadStore.open(this.ctx.nc);
        try {
          await (await this.uploads).putStream(jobId, archive.stream);
          stored = true;
        } catch (err) {
          if (err instanceof JoblineError) throw err;
          throw new JoblineError('unavailable', `the archive could not be stored: ${err instanceof Error ? err.message : String(err)}; nothing was submitted, try again`);
        }
      }
      return await this.publishSubmission(caller, jobId, spec, key, requestId);
    } finally {
      if (archive && !stored) await archive.discard();
    }
  }

  private async publishSubmission(caller: Caller, jobId: string, spec: JobSpec, key: string | undefined, requestId: string): Promise<SubmitResult> {
    const deadline = Date.now() + this.ctx.submitTimeoutMs;
    const message: SubmitJobMessage = { jobId, spec, ...(key !== undefined ? { idempotencyKey: key } : {}) };
    // The orchestrator's refusal (over a quota) comes back on an inbox, listened to before publishing.
    const refusal = this.refusalOf(createInbox());
    let duplicate: boolean;
    try {
      // Nats-Msg-Id = jobId: a retried or concurrent submission of the same key is stored once. The request id is its events' cause.
      const ack = await this.ctx.publisher.publish(subjects.submit(caller.owner), message, {
        msgId: jobId,
        headers: { [REQUEST_ID_HEADER]: requestId, [COMMAND_REPLY_HEADER]: refusal.inbox },
        timeoutMs: this.ctx.submitTimeoutMs,
      });
      duplicate = ack.duplicate;
    } catch (err) {
      refusal.close();
      throw new JoblineError('unavailable', `the submission could not be handed to the bus: ${err instanceof Error ? err.message : String(err)}`);
    }
    const waiting = new AbortController();
    const job = await Promise.race([this.ctx.projection.waitFor(jobId, Math.max(1, deadline - Date.now()), waiting.signal), refusal.refused]).finally(() => {
      refusal.close();
      waiting.abort();
    });
    if (!job) {
      throw new JoblineError(
        'unavailable',
        `job ${jobId} was accepted by the bus but is not recorded yet; it may still be: look it up later` +
          (key !== undefined ? ', or repeat the request with the same Idempotency-Key' : ''),
        { problem: { jobId } },
      );
    }
    if (key !== undefined && duplicate) return { created: false, job: sameSubmission(job, caller, key, spec) };
    return { created: true, job };
  }

  /**
   * Listens on `inbox` for a command's outcome: `refused` rejects with the orchestrator's
   * refusal (its code, message and retry hint) and never resolves otherwise (a recorded
   * command is seen in the projection).
   */
  private refusalOf(inbox: string): { inbox: string; refused: Promise<never>; close: () => void } {
    const sub = this.ctx.nc.subscribe(inbox, { max: 1, timeout: this.ctx.submitTimeoutMs });
    const refused = new Promise<never>((_resolve, reject) => {
      void (async () => {
        try {
          for await (const m of sub) {
            const parsed = CommandReplySchema.safeParse(safeJson(m.data));
            if (parsed.success && !parsed.data.ok) reject(refusalError(parsed.data, /^invalid submit command: /));
          }
        } catch {
          // timed out or closed: the projection's wait says what happened
        }
      })();
    });
    return { inbox, refused, close: () => sub.unsubscribe() };
  }

  /**
   * POST /v1/jobs/{id}/rerun: a finished job runs again as a new job with the same spec and the
   * same bundle by digest (nothing is fetched or packed again). Owner or admin, as for cancel
   * (an admin's on jobline.adm.<admin>.rerun, the admin recorded as the actor); the new job
   * belongs to the original's owner. The orchestrator's refusal (e.g. the bundle is
   * no longer stored) comes back on an inbox and is answered as it is. Idempotency-Key as for
   * submit: the same caller and key give the same re-run (200), or 409 for another job.
   */
  async rerun(caller: Caller, id: string, idempotencyKeyHeader: string | string[] | undefined, requestId: string = randomUUID()): Promise<SubmitResult> {
    const key = parseIdempotencyKey(idempotencyKeyHeader);
    const original = this.visible(caller, id);
    const jobId = key === undefined ? newTimeOrderedId() : jobIdForKey(caller.owner, key);
    if (key !== undefined) {
      const existing = this.ctx.projection.get(jobId);
      if (existing) return { created: false, job: sameRerun(existing, original.id, key) };
    }
    if (!isTerminal(original.status)) {
      throw new IllegalStateError(`job ${original.id} has not finished (${original.status}): only a finished job can be run again`, { problem: { jobStatus: original.status } });
    }
    if (original.purged) throw new IllegalStateError(`job ${original.id} was purged: it cannot be run again`);
    if (needsBundle(original.spec) && !original.bundleDigest) {
      throw new IllegalStateError(`job ${original.id} has no bundle (its packaging did not succeed), so it cannot be run again with the same bundle: submit it anew`);
    }
    this.requireBus();
    const deadline = Date.now() + this.ctx.submitTimeoutMs;
    const message: RerunJobMessage = { jobId, rerunOf: original.id, ...(key !== undefined ? { idempotencyKey: key } : {}) };
    // Listening before publishing: the orchestrator's answer cannot come before the subscription.
    const inbox = createInbox();
    const sub = this.ctx.nc.subscribe(inbox, { max: 1, timeout: this.ctx.submitTimeoutMs });
    const reply = (async (): Promise<CommandReply | null> => {
      try {
        for await (const m of sub) {
          const parsed = CommandReplySchema.safeParse(safeJson(m.data));
          return parsed.success ? parsed.data : null;
        }
      } catch {
        // timed out: said below
      }
      return null;
    })();
    let duplicate: boolean;
    try {
      // The owner's subject, or an admin's (see commandSubject); Nats-Msg-Id = the new job id.
      const ack = await this.ctx.publisher.publish(commandSubject(caller, original.owner, 'rerun'), message, {
        msgId: jobId,
        headers: { [COMMAND_REPLY_HEADER]: inbox, [REQUEST_ID_HEADER]: requestId },
        timeoutMs: this.ctx.submitTimeoutMs,
      });
      duplicate = ack.duplicate;
    } catch (err) {
      sub.unsubscribe();
      throw new JoblineError('unavailable', `the re-run could not be handed to the bus: ${err instanceof Error ? err.message : String(err)}`);
    }
    // A duplicate was handled (or is being handled) for the first request: its job is what counts.
    if (duplicate) sub.unsubscribe();
    else {
      const outcome = await reply;
      if (outcome && !outcome.ok) throw refusalError(outcome, /^invalid rerun command: /);
    }
    const job = await this.ctx.projection.waitFor(jobId, Math.max(1, deadline - Date.now()));
    if (!job) {
      throw new JoblineError('unavailable', `the re-run ${jobId} of job ${original.id} was accepted by the bus but is not recorded yet; it may still be: look it up later`, {
        problem: { jobId },
      });
    }
    if (key !== undefined && duplicate) return { created: false, job: sameRerun(job, original.id, key) };
    return { created: true, job };
  }

  /** GET /v1/jobs/{id}/compare/{other}: exit code, log digest and artifact digests of two finished jobs the caller may see. */
  async compare(caller: Caller, id: string, otherId: string): Promise<JobComparison> {
    const a = this.visible(caller, id);
    const b = this.visible(caller, otherId);
    for (const j of [a, b]) {
      if (!isTerminal(j.status)) throw new IllegalStateError(`job ${j.id} has not finished (${j.status}): compare it once it has`, { problem: { jobId: j.id, jobStatus: j.status } });
    }
    return compareRuns(comparedRun(a, await this.artifactsSha256(a)), comparedRun(b, await this.artifactsSha256(b)));
  }

  /** sha256 (hex) of the latest attempt's artifacts as GET /v1/jobs/{id}/artifacts serves them; null without any. */
  private async artifactsSha256(job: JobView): Promise<string | null> {
    if (job.attempt === 0 || job.purged) return null;
    this.artifacts ??= ArtifactStore.open(this.ctx.nc);
    const bytes = await (await this.artifacts).get(job.id, job.attempt);
    return bytes ? createHash('sha256').update(bytes).digest('hex') : null;
  }

  /**
   * A page of the jobs read model, or (`at`) of the read model as the store stood at that
   * instant: the same list, filters and owner rules, on the events recorded by then.
   */
  async list(caller: Caller, query: unknown): Promise<JobsPage> {
    const { at, ...q } = parseQuery(ListQuerySchema, query);
    const filter = { ...q, owner: this.ownerScope(caller, q.owner) };
    if (at === undefined) return this.ctx.projection.list(filter);
    return this.ctx.past.at(at, ({ projection }) => projection.list(filter));
  }

  /**
   * Which jobs were on each executor at `at` (now without it, from the live read model): the
   * executors with attempts dispatched or running then, by the executorId of their JobDispatched.
   * Heartbeats are not events, so an executor idle at that instant is not known to the history.
   */
  async executorWork(caller: Caller, query: unknown, now: number = Date.now()): Promise<ExecutorsAt> {
    const { at } = parseQuery(ExecutorsQuerySchema, query);
    const owner = caller.admin ? undefined : caller.owner;
    const read = (atMs: number, { position, projection }: PastState): ExecutorsAt => ({
      at: new Date(atMs).toISOString(),
      position,
      queued: projection.countByStatus(owner).queued,
      items: projection.executorLoad(owner),
    });
    if (at === undefined) return read(now, { position: this.ctx.projection.position, projection: this.ctx.projection });
    return this.ctx.past.at(at, (state) => read(at, state));
  }

  /** The job as the projection has it now, or (`?at=`) as it stood at a past time, replayed from its stream. */
  async get(caller: Caller, id: string, query: unknown): Promise<JobView> {
    const { at } = parseQuery(GetQuerySchema, query);
    if (at === undefined) return this.visible(caller, id);
    const records = await this.ownStream(caller, id);
    let view: JobView | null = null;
    for (const event of decodeKnown(records)) {
      // The history up to `at` is a prefix of the stream: stop at the first later event.
      if (Date.parse(event.metadata.occurredAt) > at) break;
      view = evolveJobView(view, event);
    }
    if (!view) throw new NotFoundError(`job ${id} did not exist yet at ${new Date(at).toISOString()}`);
    return view;
  }

  async cancel(caller: Caller, id: string, body: unknown, requestId: string = randomUUID()): Promise<{ id: string; status: JobStatus; cancelRequested: true }> {
    const parsed = CancelBodySchema.safeParse(body);
    if (!parsed.success) throw new ValidationError('invalid cancel request', parsed.error.issues.map((i) => ({ path: i.path.map(String).join('.') || '(root)', message: i.message })));
    const job = this.visible(caller, id);
    if (isTerminal(job.status)) throw new IllegalStateError(`job ${job.id} already finished (${job.status})`, { problem: { jobStatus: job.status } });
    const reason = parsed.data?.reason;
    const message: CancelJobMessage = { jobId: job.id, ...(reason !== undefined ? { reason } : {}) };
    this.requireBus();
    try {
      await this.ctx.publisher.publish(commandSubject(caller, job.owner, 'cancel'), message, { headers: { [REQUEST_ID_HEADER]: requestId }, timeoutMs: this.ctx.submitTimeoutMs });
    } catch (err) {
      throw new JoblineError('unavailable', `the cancellation could not be handed to the bus: ${err instanceof Error ? err.message : String(err)}`);
    }
    return { id: job.id, status: job.status, cancelRequested: true };
  }

  /**
   * Purges a finished job (DELETE /v1/jobs/{id}): publishes the purge command and resolves
   * once the projection shows the job purged (the orchestrator records JobPurged, then
   * deletes the logs and artifacts). A job already purged is done at once.
   */
  async purge(caller: Caller, id: string, requestId: string = randomUUID()): Promise<void> {
    const job = this.visible(caller, id);
    if (job.purged) return;
    if (!isTerminal(job.status)) throw new IllegalStateError(`job ${job.id} is not finished (${job.status}): cancel it first`, { problem: { jobStatus: job.status } });
    this.requireBus();
    const deadline = Date.now() + this.ctx.submitTimeoutMs;
    // Listening before publishing, so the change cannot slip between the two.
    const purged = this.waitUntil(job.id, (v) => v.purged, this.ctx.submitTimeoutMs);
    const message: PurgeJobMessage = { jobId: job.id };
    try {
      await this.ctx.publisher.publish(commandSubject(caller, job.owner, 'purge'), message, {
        headers: { [REQUEST_ID_HEADER]: requestId },
        timeoutMs: Math.max(1, deadline - Date.now()),
      });
    } catch (err) {
      purged.cancel();
      throw new JoblineError('unavailable', `the purge could not be handed to the bus: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!(await purged.view)) {
      throw new JoblineError('unavailable', `the purge of job ${job.id} was accepted by the bus but is not recorded yet; it may still be: look the job up later`, {
        problem: { jobId: job.id },
      });
    }
  }

  /** While the bus is down a write cannot be recorded: say so at once rather than after a timeout. */
  private requireBus(): void {
    if (!this.ctx.bus.connected) throw new JoblineError('unavailable', `the bus is unreachable (${this.ctx.bus.reason ?? 'NATS connection lost'}); nothing was changed, try again shortly`);
  }

  /** The job's view once `ok` holds for it (now or after a change), or null after timeoutMs. */
  private waitUntil(jobId: string, ok: (view: JobView) => boolean, timeoutMs: number): { view: Promise<JobView | null>; cancel: () => void } {
    let cancel = () => undefined as void;
    const view = new Promise<JobView | null>((resolve) => {
      const done = (v: JobView | null) => {
        clearTimeout(timer);
        off();
        resolve(v);
      };
      const off = this.ctx.projection.onChange(jobId, (v) => {
        if (ok(v)) done(v);
      });
      const timer = setTimeout(() => done(null), timeoutMs);
      cancel = () => done(null);
      const now = this.ctx.projection.get(jobId);
      if (now && ok(now)) done(now);
    });
    return { view, cancel };
  }

  async events(caller: Caller, id: string): Promise<{ items: JobEventItem[] }> {
    const records = await this.ownStream(caller, id);
    return { items: records.map(toEventItem) };
  }

  /** The webhook deliveries of a visible job (README "Webhooks"): each with its state and every attempt's outcome. */
  async webhooks(caller: Caller, id: string): Promise<{ items: WebhookDeliveryView[] }> {
    const job = this.visible(caller, id);
    this.requireBus();
    try {
      return { items: webhookDeliveries(await readWebhookAttempts(this.ctx.js, job.id)) };
    } catch (err) {
      throw new JoblineError('unavailable', `the webhook deliveries could not be read from the bus: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  stats(caller: Caller, query: unknown): JobStats {
    const { owner } = parseQuery(StatsQuerySchema, query);
    const byStatus = this.ctx.projection.countByStatus(this.ownerScope(caller, owner));
    return { total: Object.values(byStatus).reduce((a, b) => a + b, 0), byStatus };
  }

  /** Jobs submitted and finished per time bucket: the caller's own, or (admins) everyone's or one owner's. */
  timeline(caller: Caller, query: unknown, now: number = Date.now()): JobTimeline {
    const q = parseQuery(TimelineQuerySchema, query);
    const bucketMs = (q.bucket ?? 60) * 1000;
    const to = q.to ?? Math.ceil(now / bucketMs) * bucketMs;
    const from = q.from ?? to - 60 * bucketMs;
    if (from >= to) throw new ValidationError('invalid timeline', [{ path: 'from', message: 'must be before to' }]);
    if (Math.ceil((to - from) / bucketMs) > MAX_TIMELINE_BUCKETS) {
      throw new ValidationError('invalid timeline', [{ path: 'bucket', message: `at most ${MAX_TIMELINE_BUCKETS} buckets between from and to: use a wider bucket` }]);
    }
    const buckets = this.ctx.projection.timeline({ from, to, bucketMs, owner: this.ownerScope(caller, q.owner) });
    return {
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
      bucketSeconds: bucketMs / 1000,
      buckets: buckets.map((b) => ({ ...b, start: new Date(b.start).toISOString() })),
    };
  }

  /** The job if the caller may see it; otherwise exactly the answer for a job that does not exist. */
  visible(caller: Caller, rawId: string): JobView {
    const id = rawId.toLowerCase();
    const job = isJobId(id) ? this.ctx.projection.get(id) : null;
    if (!job || (!caller.admin && job.owner !== caller.owner)) throw notFound(rawId);
    return job;
  }

  /** Admins may filter by any owner (or none); everyone else is scoped to their own jobs. */
  private ownerScope(caller: Caller, requested: string | undefined): string | undefined {
    if (caller.admin) return requested;
    if (requested !== undefined && requested !== caller.owner) {
      throw new JoblineError('permission_denied', 'the owner filter is for admins; without it you get your own jobs');
    }
    return caller.owner;
  }

  /** The job's stream, read from the store, if the caller may see it. */
  private async ownStream(caller: Caller, rawId: string): Promise<RecordedEvent[]> {
    const id = rawId.toLowerCase();
    if (!isJobId(id)) throw notFound(rawId);
    const records = await this.ctx.eventStore.readStream(jobStreamName(id));
    const first = decodeKnown(records.slice(0, 1))[0];
    if (!first || first.type !== 'JobSubmitted' || (!caller.admin && first.data.owner !== caller.owner)) throw notFound(rawId);
    return records;
  }
}

const notFound = (id: string) => new NotFoundError(`job ${id} not found`);

/** An Idempotency-Key named an existing job: the same submission again is fine, a different one is a conflict. */
function sameSubmission(existing: JobView, caller: Caller, key: string, spec: JobSpec): JobView {
  if (existing.owner !== caller.owner || canonicalJson(existing.spec) !== canonicalJson(spec)) {
    throw new JoblineError(
      'conflict',
      `Idempotency-Key ${JSON.stringify(key)} was already used for job ${existing.id} with a different spec; use a new key for a new job`,
      { problem: { jobId: existing.id } },
    );
  }
  return existing;
}

/** An Idempotency-Key named an existing job: a re-run of the same job is the same request, anything else a conflict. */
function sameRerun(existing: JobView, originalId: string, key: string): JobView {
  if (existing.rerunOf !== originalId) {
    throw new JoblineError('conflict', `Idempotency-Key ${JSON.stringify(key)} was already used for job ${existing.id}, which is not a re-run of ${originalId}; use a new key`, {
      problem: { jobId: existing.id },
    });
  }
  return existing;
}

function safeJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch {
    return undefined;
  }
}

/** JSON with object keys sorted, so two equal values compare equal whatever their key order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

/** Job events of known types, upcast; events of types this build does not know are left out. */
export function decodeKnown(records: RecordedEvent[]): StoredJobEvent[] {
  const out: StoredJobEvent[] = [];
  for (const r of records) {
    try {
      out.push(decodeJobEvent(r));
    } catch (err) {
      if (!(err instanceof UnknownEventError)) throw err;
    }
  }
  return out;
}

function toEventItem(r: RecordedEvent): JobEventItem {
  let event: StoredJobEvent | null = null;
  try {
    event = decodeJobEvent(r);
  } catch (err) {
    if (!(err instanceof UnknownEventError)) throw err;
  }
  const meta = r.metadata as { version?: unknown; occurredAt?: unknown; actor?: unknown; causationId?: unknown; correlationId?: unknown };
  return {
    position: r.position,
    id: r.id,
    type: r.type,
    version: event ? event.metadata.version : Number(meta.version ?? 1),
    occurredAt: event ? event.metadata.occurredAt : String(meta.occurredAt ?? r.recordedAt),
    actor: event ? event.metadata.actor : String(meta.actor ?? ''),
    causationId: event ? event.metadata.causationId : typeof meta.causationId === 'string' ? meta.causationId : null,
    correlationId: event ? event.metadata.correlationId : typeof meta.correlationId === 'string' ? meta.correlationId : null,
    data: event ? event.data : r.data,
  };
}

/** The orchestrator's refusal of a command as the error the edges map (its code, message and retry hint). */
function refusalError(r: Extract<CommandReply, { ok: false }>, prefix: RegExp): JoblineError {
  const extra = r.retryAfterSeconds !== undefined ? { retryAfterSeconds: r.retryAfterSeconds, problem: { retryAfterSeconds: r.retryAfterSeconds } } : undefined;
  return new JoblineError(isErrorCode(r.code) ? r.code : 'internal', r.message.replace(prefix, ''), extra);
}
