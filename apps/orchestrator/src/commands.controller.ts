import { Controller, Inject } from '@nestjs/common';
import { Ctx, EventPattern, Payload } from '@nestjs/microservices';
import { STREAMS, subjects } from '../../../libs/contracts/src';
import type { JetStreamContext } from '../../../libs/messaging/src/jetstream.transport';
import { hopMarks } from '../../../libs/messaging/src/hop-marks';
import { commandCauseOf, commandVerbOf, replyInboxOf } from './command-outcomes';
import { Orchestrator } from './orchestrator';

export const ORCHESTRATOR = Symbol('Orchestrator');

/** Thin edge: subject and payload in, orchestrator call out; the transport acks on success. */
@Controller()
export class CommandsController {
  constructor(@Inject(ORCHESTRATOR) private readonly orchestrator: Orchestrator) {}

  /** Every `jobline.cmd.>` subject, so an unknown verb is refused (and said so on jobline.rej.<owner>), never left unread. */
  @EventPattern(subjects.commandsAll)
  command(@Payload() payload: unknown, @Ctx() ctx: JetStreamContext): Promise<void> {
    return this.run(payload, ctx);
  }

  /** `jobline.adm.<admin>.cancel|purge|rerun`: an admin acting on any owner's job (the api sends them; only the services may publish there). */
  @EventPattern(subjects.adminCommandsAll)
  adminCommand(@Payload() payload: unknown, @Ctx() ctx: JetStreamContext): Promise<void> {
    return this.run(payload, ctx);
  }

  @EventPattern('jobline.report.*')
  async report(@Payload() payload: unknown, @Ctx() ctx: JetStreamContext): Promise<void> {
    await this.orchestrator.report(payload, ctx.getHeader('Nats-Msg-Id') ?? `${STREAMS.reports}:${ctx.msg.seq}`);
  }

  @EventPattern('jobline.pkg.done.*')
  async packaged(@Payload() payload: unknown, @Ctx() ctx: JetStreamContext): Promise<void> {
    await this.orchestrator.packaged(payload, ctx.getHeader('Nats-Msg-Id') ?? `${STREAMS.packages}:${ctx.msg.seq}`);
  }

  private async run(payload: unknown, ctx: JetStreamContext): Promise<void> {
    const { owner, verb, admin } = commandVerbOf(ctx.subject);
    replyInboxOf(ctx.msg);
    const mark = hopMarks.record && verb === 'submit' ? markJob(payload) : null;
    if (mark) hopMarks.record?.(mark, 'orchestrator.command');
    await this.orchestrator[verb](owner, payload, { admin, causationId: commandCauseOf(ctx.msg, STREAMS.commands) });
    if (mark) hopMarks.record?.(mark, 'orchestrator.commandDone');
  }
}

/** The submitted job's id, for the benchmark's hop marks only. */
function markJob(payload: unknown): string | null {
  const id = (payload as { jobId?: unknown } | null)?.jobId;
  return typeof id === 'string' ? id : null;
}
