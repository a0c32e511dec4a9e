import { Module, type DynamicModule, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { STREAMS, subjects } from '../../../libs/contracts/src';
import { CONSUMER_DEFAULTS, JetStreamExceptionFilter, JetStreamServer } from '../../../libs/messaging/src/jetstream.transport';
import type { StreamOptions } from '../../../libs/messaging/src/streams';
import { CommandOutcomes } from './command-outcomes';
import { CommandsController, ORCHESTRATOR } from './commands.controller';
import { Orchestrator, type OrchestratorOptions } from './orchestrator';

@Module({})
export class OrchestratorModule {
  static forRoot(orchestrator: Orchestrator): DynamicModule {
    return {
      module: OrchestratorModule,
      controllers: [CommandsController],
      providers: [{ provide: ORCHESTRATOR, useValue: orchestrator }],
    };
  }
}

/** The durable consumer of every `jobline.cmd.>` command. */
export const COMMANDS_DURABLE = 'orchestrator-commands';
/** The durable consumer of every `jobline.adm.>` command (an admin's, sent by the api). */
export const ADMIN_COMMANDS_DURABLE = 'orchestrator-admin-commands';
/** The per-verb consumers of earlier versions; their unacked commands stay in the stream for COMMANDS_DURABLE. */
const LEGACY_COMMAND_DURABLES = ['orchestrator-submit', 'orchestrator-cancel', 'orchestrator-purge'];

async function removeConsumers(jsm: JetStreamManager, stream: string, durables: string[]): Promise<void> {
  for (const durable of durables) {
    await jsm.consumers.delete(stream, durable).catch((err: unknown) => {
      if (!/not found/i.test(String(err))) throw err;
    });
  }
}

/**
 * The ack wait and pull expiry of the orchestrator's consumers. With a leader lease, what a frozen
 * (SIGSTOP, a paused VM) or dead orchestrator had taken (commands, executor reports) comes back to
 * another one within about a lease, as the leadership does: ack wait = the lease (1..30 s), and
 * pulls expire after at most that (5 s at most), so a frozen one stops being handed messages about
 * as soon and a redelivery cannot land in its open pull again. With the transport's 30 s, the
 * reports a frozen leader had taken kept the executors' slots taken for 30 s after the take-over.
 * Alone (`single`), the transport's defaults.
 */
export function orchestratorConsumerTimings(leadership?: { leaseMs: number }): { ackWaitMs: number; pullExpiresMs: number } {
  if (!leadership) return { ackWaitMs: CONSUMER_DEFAULTS.ackWaitMs, pullExpiresMs: CONSUMER_DEFAULTS.pullExpiresMs };
  const ackWaitMs = Math.min(CONSUMER_DEFAULTS.ackWaitMs, Math.max(1000, Math.round(leadership.leaseMs)));
  return { ackWaitMs, pullExpiresMs: Math.min(CONSUMER_DEFAULTS.pullExpiresMs, ackWaitMs) };
}

export interface OrchestratorAppOptions extends OrchestratorOptions {
  streams?: StreamOptions;
  /** Handlers running at once per consumer (default 256). */
  concurrency?: number;
  logger: OrchestratorOptions['logger'];
}

/**
 * The orchestrator as a Nest microservice on the JetStream transport: commands and
 * executor reports are consumed durably and acked after they are recorded.
 */
export async function createOrchestratorApp(options: OrchestratorAppOptions): Promise<{ app: INestMicroservice; orchestrator: Orchestrator }> {
  const orchestrator = new Orchestrator(options);
  const concurrency = options.concurrency ?? 256;
  const timings = orchestratorConsumerTimings(options.leadership);
  const outcomes = new CommandOutcomes(options.nc, options.logger);
  // One consumer for every verb replaces one per verb (a work-queue stream refuses overlapping filters).
  await removeConsumers(await jetstreamManager(options.nc), STREAMS.commands, LEGACY_COMMAND_DURABLES);
  const strategy = new JetStreamServer({
    connection: options.nc,
    streams: options.streams,
    consumers: [
      { pattern: subjects.commandsAll, stream: STREAMS.commands, durable: COMMANDS_DURABLE, concurrency, ...timings, onSettled: outcomes.settled },
      { pattern: subjects.adminCommandsAll, stream: STREAMS.commands, durable: ADMIN_COMMANDS_DURABLE, concurrency, ...timings, onSettled: outcomes.settled },
      { pattern: 'jobline.report.*', stream: STREAMS.reports, durable: 'orchestrator-reports', concurrency, ...timings },
      { pattern: 'jobline.pkg.done.*', stream: STREAMS.packages, durable: 'orchestrator-packaged', concurrency, ...timings },
    ],
  });
  const app = await NestFactory.createMicroservice(OrchestratorModule.forRoot(orchestrator), {
    strategy,
    logger: ['error', 'warn'],
    abortOnError: false,
  });
  app.useGlobalFilters(new JetStreamExceptionFilter());
  await orchestrator.start();
  await app.listen();
  return { app, orchestrator };
}
