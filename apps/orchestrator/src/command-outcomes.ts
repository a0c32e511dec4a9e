import type { JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/nats-core';
import {
  ADMIN_COMMAND_VERBS,
  COMMAND_REPLY_HEADER,
  COMMAND_VERBS,
  REQUEST_ID_HEADER,
  RequestIdSchema,
  JoblineError,
  ValidationError,
  isOwner,
  parseCommandSubject,
  subjects,
  type AdminCommandVerb,
  type CommandRejection,
  type CommandReply,
  type CommandVerb,
} from '../../../libs/contracts/src';
import { CommandHeadersSchema } from '../../../libs/contracts/src/schemas/bus-messages.schemas';
import type { SettledOutcome } from '../../../libs/messaging/src/jetstream.transport';

const VERBS: ReadonlySet<string> = new Set(COMMAND_VERBS);
const ADMIN_VERBS: ReadonlySet<string> = new Set(ADMIN_COMMAND_VERBS);

/**
 * The verb of a command subject, `jobline.cmd.<owner>.<verb>` or (admin: true)
 * `jobline.adm.<admin>.<verb>`, or a ValidationError naming `(subject)` (an unknown verb is
 * refused, never dropped).
 */
export function commandVerbOf(subject: string): { owner: string; verb: CommandVerb; admin: false } | { owner: string; verb: AdminCommandVerb; admin: true } {
  const parsed = parseCommandSubject(subject);
  if (!parsed) {
    throw new ValidationError(`not a command subject: ${subject} (expected jobline.cmd.<owner>.<verb>)`, [{ path: '(subject)', message: 'expected jobline.cmd.<owner>.<verb>' }]);
  }
  const verbs = parsed.admin ? ADMIN_COMMAND_VERBS : COMMAND_VERBS;
  if (!(parsed.admin ? ADMIN_VERBS : VERBS).has(parsed.verb)) {
    throw new ValidationError(`unknown ${parsed.admin ? 'admin ' : ''}command verb '${parsed.verb}': expected ${verbs.join(', ')}`, [{ path: '(subject)', message: `unknown verb '${parsed.verb}'` }]);
  }
  return parsed as { owner: string; verb: CommandVerb; admin: false } | { owner: string; verb: AdminCommandVerb; admin: true };
}

/**
 * The id a command's events name as their cause: its Jobline-Request-Id (the REST or gRPC
 * request it comes from), else its Nats-Msg-Id, else `<stream>:<sequence>` (unique in the
 * stream). A malformed Jobline-Request-Id refuses the command (fail closed).
 */
export function commandCauseOf(msg: Pick<JsMsg, 'headers' | 'seq'>, stream: string): string {
  const requestId = msg.headers?.get(REQUEST_ID_HEADER);
  if (requestId) {
    const ok = RequestIdSchema.safeParse(requestId);
    if (!ok.success) {
      throw new ValidationError(`${REQUEST_ID_HEADER} must be 1-128 of [A-Za-z0-9._:-], got ${JSON.stringify(requestId.slice(0, 200))}`, [
        { path: REQUEST_ID_HEADER, message: 'not a request id' },
      ]);
    }
    return requestId;
  }
  const msgId = msg.headers?.get('Nats-Msg-Id');
  return msgId ? msgId : `${stream}:${msg.seq}`;
}

/** What a refused command's sender is told: the code of the error table, the first field at fault, every issue in the message. */
export function rejectionOf(subject: string, payload: unknown, error: unknown): CommandRejection {
  const code = error instanceof JoblineError ? error.code : 'internal';
  const issues = error instanceof ValidationError ? error.issues : [];
  const base = error instanceof JoblineError ? error.message : 'the command could not be handled; the orchestrator log has the details';
  const message = issues.length ? `${base}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}` : base;
  const jobId = jobIdOf(payload);
  const retryAfterSeconds = error instanceof JoblineError ? error.details?.retryAfterSeconds : undefined;
  return {
    subject,
    ...(jobId !== undefined ? { jobId } : {}),
    code,
    ...(issues[0] ? { field: issues[0].path } : {}),
    message,
    ...(typeof retryAfterSeconds === 'number' ? { retryAfterSeconds } : {}),
  };
}

function jobIdOf(payload: unknown): string | undefined {
  if (typeof payload !== 'object' || payload === null) return undefined;
  const v = (payload as { jobId?: unknown }).jobId;
  return typeof v === 'string' && v.length <= 256 ? v : undefined;
}

/** The inbox a command asked its outcome to be sent to; a header naming anything else is refused (it would aim the orchestrator's rights at any subject). */
export function replyInboxOf(msg: Pick<JsMsg, 'headers'>): string | undefined {
  const value = msg.headers?.get(COMMAND_REPLY_HEADER);
  if (!value) return undefined;
  const ok = CommandHeadersSchema.shape[COMMAND_REPLY_HEADER].safeParse(value);
  if (!ok.success) {
    throw new ValidationError(`${COMMAND_REPLY_HEADER} must name an inbox (_INBOX.… or _INBOX_<owner>.…), got ${JSON.stringify(value.slice(0, 200))}`, [
      { path: COMMAND_REPLY_HEADER, message: 'not an inbox' },
    ]);
  }
  return value;
}

const decoder = new TextDecoder();

function payloadOf(msg: JsMsg): unknown {
  try {
    return JSON.parse(decoder.decode(msg.data));
  } catch {
    return undefined;
  }
}

/**
 * Makes a command's outcome visible to its sender: a refused command is published on
 * `jobline.rej.<owner>` (and to its Jobline-Reply-To inbox); a recorded one is answered
 * on its inbox when it named one. Core NATS: a sender that is not listening misses it,
 * and nothing is stored twice.
 */
export class CommandOutcomes {
  constructor(
    private readonly nc: NatsConnection,
    private readonly logger: { warn(message: string): void },
  ) {}

  readonly settled = (msg: JsMsg, outcome: SettledOutcome): void => {
    let inbox: string | undefined;
    try {
      inbox = replyInboxOf(msg);
    } catch {
      inbox = undefined; // already refused by the handler, with this header named
    }
    if (outcome.ok) {
      if (!inbox) return;
      const jobId = jobIdOf(payloadOf(msg)) ?? '';
      this.send(inbox, { ok: true, subject: msg.subject, jobId } satisfies CommandReply);
      return;
    }
    const rejection = rejectionOf(msg.subject, payloadOf(msg), outcome.error);
    const owner = msg.subject.split('.')[2];
    if (owner !== undefined && isOwner(owner)) this.send(subjects.rejections(owner), rejection);
    if (inbox) this.send(inbox, { ok: false, ...rejection } satisfies CommandReply);
  };

  private send(subject: string, body: unknown): void {
    try {
      this.nc.publish(subject, JSON.stringify(body));
    } catch (err) {
      this.logger.warn(`orchestrator: could not publish a command outcome on ${subject}: ${(err as Error).message}`);
    }
  }
}
