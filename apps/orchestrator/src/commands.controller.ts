import { Controller, Inject } from '@nestjs/common';
import { Ctx, EventPattern, Payload } from '@nestjs/microservices';
import { parseCommandSubject } from '../../../libs/contracts/src';
import type { JetStreamContext } from '../../../libs/messaging/src/jetstream.transport';
import { Orchestrator } from './orchestrator';

export const ORCHESTRATOR = Symbol('Orchestrator');

/** Thin edge: subject and payload in, orchestrator call out; the transport acks on success. */
@Controller()
export class CommandsController {
  constructor(@Inject(ORCHESTRATOR) private readonly orchestrator: Orchestrator) {}

  @EventPattern('jobline.cmd.*.submit')
  async submit(@Payload() payload: unknown, @Ctx() ctx: JetStreamContext): Promise<void> {
    await this.orchestrator.submit(parseCommandSubject(ctx.subject)?.owner ?? '', payload);
  }

  @EventPattern('jobline.cmd.*.cancel')
  async cancel(@Payload() payload: unknown, @Ctx() ctx: JetStreamContext): Promise<void> {
    await this.orchestrator.cancel(parseCommandSubject(ctx.subject)?.owner ?? '', payload);
  }

  @EventPattern('jobline.cmd.*.purge')
  async purge(@Payload() payload: unknown, @Ctx() ctx: JetStreamContext): Promise<void> {
    await this.orchestrator.purge(parseCommandSubject(ctx.subject)?.owner ?? '', payload);
  }

  @EventPattern('jobline.report.*')
  async report(@Payload() payload: unknown, @Ctx() ctx: JetStreamContext): Promise<void> {
    await this.orchestrator.report(payload, ctx.getHeader('Nats-Msg-Id') ?? 'last-event');
  }

  @EventPattern('jobline.pkg.done.*')
  async packaged(@Payload() payload: unknown, @Ctx() ctx: JetStreamContext): Promise<void> {
    await this.orchestrator.packaged(payload, ctx.getHeader('Nats-Msg-Id') ?? 'last-event');
  }
}
