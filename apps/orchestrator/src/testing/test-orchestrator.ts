import type { INestMicroservice } from '@nestjs/common';
import type { TestBus } from '../../../../libs/testing/src';
import type { Orchestrator } from '../orchestrator';
import { createOrchestratorApp, type OrchestratorAppOptions } from '../orchestrator.module';

/** The logger of the orchestrator's tests: only errors are shown. */
export const QUIET_ORCHESTRATOR_LOGGER = { log: () => undefined, warn: () => undefined, error: (m: string, ...r: unknown[]) => console.error(m, ...r) };

export interface TestOrchestrator {
  app: INestMicroservice;
  orchestrator: Orchestrator;
  /** Closes the Nest app (its consumers), then stops the orchestrator. */
  stop(): Promise<void>;
}

/** The orchestrator app on a TestBus's connection and stores; `options` add to or override those. */
export async function startTestOrchestrator(bus: TestBus, options: Partial<OrchestratorAppOptions> = {}): Promise<TestOrchestrator> {
  const { app, orchestrator } = await createOrchestratorApp({ eventStore: bus.store, checkpoints: bus.checkpoints, nc: bus.nc, logger: QUIET_ORCHESTRATOR_LOGGER, ...options });
  return {
    app,
    orchestrator,
    stop: async () => {
      await app.close();
      await orchestrator.stop();
    },
  };
}
