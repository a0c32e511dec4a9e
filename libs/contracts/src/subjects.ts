/**
 * NATS subjects and JetStream streams. Subject tokens are validated ids (owner,
 * jobId, executorId), so none can smuggle a '.', '*' or '>' into a subject.
 */
export const subjects = {
  /** Integrations submit here; the owner is the subject token (DESIGN.md). */
  submit: (owner: string) => `jobline.cmd.${owner}.submit`,
  cancel: (owner: string) => `jobline.cmd.${owner}.cancel`,
  purge: (owner: string) => `jobline.cmd.${owner}.purge`,
  rerun: (owner: string) => `jobline.cmd.${owner}.rerun`,
  commandsAll: 'jobline.cmd.>',
  /**
   * An admin's commands on any owner's job: the subject token is the admin who acts (the
   * recorded actor). Only the services' NATS user may publish here (deploy/nats/jobline.conf):
   * the api sends an admin's cancel, purge and re-run of another owner's job here.
   */
  adminCommand: (admin: string, verb: AdminCommandVerb) => `jobline.adm.${admin}.${verb}`,
  adminCommandsAll: 'jobline.adm.>',
  /**
   * Refused commands of one owner (core NATS, not stored): `{subject, jobId?, code, field?, message}`.
   * Outside `jobline.owner.<owner>.>` on purpose: an integration user subscribes to both.
   */
  rejections: (owner: string) => `jobline.rej.${owner}`,
  /** Every stored event, in order per job. */
  event: (jobId: string, type: string) => `jobline.evt.${jobId}.${type}`,
  eventsOfJob: (jobId: string) => `jobline.evt.${jobId}.*`,
  eventsAll: 'jobline.evt.>',
  /** Log chunks: raw bytes, metadata in headers (see log-chunk.ts). */
  logs: (jobId: string) => `jobline.logs.${jobId}`,
  logsAll: 'jobline.logs.>',
  /**
   * Per-owner copies for integrations (core NATS, not stored): every stored event and every
   * log chunk is also published under its job's owner, so a NATS user can be limited to
   * `jobline.owner.<owner>.>` and sees only its own jobs (README "Integrating over NATS").
   */
  ownerEvent: (owner: string, jobId: string, type: string) => `jobline.owner.${owner}.evt.${jobId}.${type}`,
  ownerEventsOfJob: (owner: string, jobId: string) => `jobline.owner.${owner}.evt.${jobId}.*`,
  ownerLogs: (owner: string, jobId: string) => `jobline.owner.${owner}.logs.${jobId}`,
  /** Everything an owner's integration user may subscribe to (besides its inbox). */
  ownerAll: (owner: string) => `jobline.owner.${owner}.>`,
  /** Attempts handed to one executor (derived from JobDispatched by the relay). */
  work: (executorId: string) => `jobline.work.${executorId}`,
  workAll: 'jobline.work.>',
  /** Stop orders for one executor (derived from JobCancelRequested / JobTimedOut). */
  control: (executorId: string) => `jobline.ctl.${executorId}`,
  controlAll: 'jobline.ctl.>',
  /** Executor reports about attempts, per job so one job's reports stay in order. */
  report: (jobId: string) => `jobline.report.${jobId}`,
  reportsAll: 'jobline.report.>',
  /**
   * Executor heartbeats (core NATS, not persisted). Sent as requests: the scheduling
   * orchestrator answers with a LeaseReply naming the attempts still current there.
   */
  heartbeat: (executorId: string) => `jobline.hb.${executorId}`,
  heartbeatsAll: 'jobline.hb.*',
  /**
   * Claims (core NATS request/reply, queue group `orchestrators`): an executor asks to start
   * an attempt and runs its command only once the answer says JobStarted is recorded.
   */
  claim: (jobId: string) => `jobline.claim.${jobId}`,
  claimsAll: 'jobline.claim.*',
  /** Jobs to bundle (derived from JobSubmitted with a source or data by the relay), for the packagers. */
  packageWork: (jobId: string) => `jobline.pkg.work.${jobId}`,
  packageWorkAll: 'jobline.pkg.work.*',
  /** A packager's result for a job (bundle digest or the reason it failed), for the orchestrator. */
  packaged: (jobId: string) => `jobline.pkg.done.${jobId}`,
  packagedAll: 'jobline.pkg.done.*',
  packagesAll: 'jobline.pkg.>',
  /** Webhook deliveries to make, planned from the event that ended a job (README "Webhooks"). */
  webhookOrder: (jobId: string) => `jobline.hook.order.${jobId}`,
  webhookOrdersAll: 'jobline.hook.order.>',
  /** The outcome of each webhook delivery attempt of a job. */
  webhookAttempts: (jobId: string) => `jobline.hook.rec.${jobId}`,
  webhookAttemptsAll: 'jobline.hook.rec.>',
  /** Signed chain checkpoints of the event store (core NATS), published by the orchestrator. */
  chainCheckpoint: () => 'jobline.chain.checkpoint',
} as const;

/** The verbs of `jobline.cmd.<owner>.<verb>`; any other verb is refused (on `jobline.rej.<owner>`). */
export const COMMAND_VERBS = ['submit', 'cancel', 'purge', 'rerun'] as const;
export type CommandVerb = (typeof COMMAND_VERBS)[number];
/** The verbs of `jobline.adm.<admin>.<verb>` (an admin submits as itself, on jobline.cmd.<admin>.submit). */
export const ADMIN_COMMAND_VERBS = ['cancel', 'purge', 'rerun'] as const;
export type AdminCommandVerb = (typeof ADMIN_COMMAND_VERBS)[number];

/**
 * Header naming the request a command comes from (a REST X-Request-Id, a gRPC x-request-id):
 * the causationId of the events the command records. Without it, a command's Nats-Msg-Id is
 * its id, else its stream sequence (`JOBLINE_CMD:<seq>`). See RequestIdSchema.
 */
export const REQUEST_ID_HEADER = 'Jobline-Request-Id';

/**
 * Header naming where the outcome of a command is sent (an inbox: `_INBOX.…` or
 * `_INBOX_<owner>.…`). JetStream answers a command's own reply subject with its publish
 * ack (stored, not yet handled), so the handled outcome needs a subject of its own.
 */
export const COMMAND_REPLY_HEADER = 'Jobline-Reply-To';

/**
 * Parses `jobline.cmd.<owner>.<verb>` and `jobline.adm.<admin>.<verb>` (then `admin` is true and
 * `owner` names the admin who acts); null when the subject is neither.
 */
export function parseCommandSubject(subject: string): { owner: string; verb: string; admin: boolean } | null {
  const parts = subject.split('.');
  if (parts.length !== 4 || parts[0] !== 'jobline' || (parts[1] !== 'cmd' && parts[1] !== 'adm')) return null;
  return { owner: parts[2], verb: parts[3], admin: parts[1] === 'adm' };
}

export const STREAMS = {
  commands: 'JOBLINE_CMD',
  events: 'JOBLINE_EVT',
  logs: 'JOBLINE_LOGS',
  work: 'JOBLINE_WORK',
  control: 'JOBLINE_CTL',
  reports: 'JOBLINE_REPORTS',
  packages: 'JOBLINE_PKG',
  webhookOrders: 'JOBLINE_HOOK_ORDERS',
  webhookAttempts: 'JOBLINE_HOOK_REC',
} as const;

/** Headers of a log chunk message on `jobline.logs.<jobId>`. */
export const LOG_HEADERS = {
  attempt: 'Jobline-Attempt',
  stream: 'Jobline-Stream',
  offset: 'Jobline-Offset',
} as const;

export type LogStream = 'stdout' | 'stderr';

/** A slice of an attempt's output. offset counts bytes of stdout and stderr together, per attempt. */
export interface LogChunk {
  jobId: string;
  attempt: number;
  stream: LogStream;
  offset: number;
  data: Uint8Array;
}
