import { Module, type DynamicModule, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { STREAMS } from '../../../libs/contracts/src';
import { JetStreamExceptionFilter, JetStreamServer } from '../../../libs/messaging/src/jetstream.transport';
import type { StreamOptions } from '../../../libs/messaging/src/streams';
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
  const strategy = new JetStreamServer({
    connection: options.nc,
    streams: options.streams,
    consumers: [
      { pattern: 'jobline.cmd.*.submit', stream: STREAMS.commands, durable: 'orchestrator-submit', concurrency },
      { pattern: 'jobline.cmd.*.cancel', stream: STREAMS.commands, durable: 'orchestrator-cancel', concurrency },
      { pattern: 'jobline.cmd.*.purge', stream: STREAMS.commands, durable: 'orchestrator-purge', concurrency },
      { pattern: 'jobline.report.*', stream: STREAMS.reports, durable: 'orchestrator-reports', concurrency },
      { pattern: 'jobline.pkg.done.*', stream: STREAMS.packages, durable: 'orchestrator-packaged', concurrency },
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
