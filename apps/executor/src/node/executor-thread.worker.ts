import { parentPort, workerData } from 'node:worker_threads';
import { createLogger, loggerTo, onBusClosedForGood, type ServiceLogger } from '../../../../libs/service/src';
import type { ExecutorThreadData, ExecutorThreadMessage, ExecutorThreadRequest } from './executor-thread';
import { startExecutor } from './start-executor';

/** The executor thread's entry (see executor-thread.ts): startExecutor, then what the dev process asks. */

const port = parentPort;
if (!port) throw new Error('executor-thread.worker is a worker thread entry, not a program');
const { config, log } = workerData as ExecutorThreadData;
const post = (m: ExecutorThreadMessage) => port.postMessage(m);

const logger: ServiceLogger =
  log.kind === 'dev-logger'
    ? loggerTo(
        {
          debug: (text) => post({ type: 'log', level: 'debug', text }),
          log: (text) => post({ type: 'log', level: 'log', text }),
          warn: (text) => post({ type: 'log', level: 'warn', text }),
          error: (text) => post({ type: 'log', level: 'error', text }),
        },
        'executor',
        config.log.level,
      )
    : createLogger({
        service: 'executor',
        ...config.log,
        // The dev process's stdout decides the format, as it would for `jobline executor`.
        destination: Object.assign(Object.create(null) as object, { isTTY: log.isTTY, write: (line: string) => (post({ type: 'stdout', line }), true) }) as NodeJS.WritableStream & { isTTY: boolean },
      });

// A refused connection ends the dev process as it ends a service (runService's handler is on the main thread).
onBusClosedForGood((why) => post({ type: 'bus-closed', why }));

startExecutor(config, { logger, local: true, streamsReady: true }).then(
  (handle) => {
    port.on('message', (m: ExecutorThreadRequest) => {
      if (m.type === 'metrics') {
        handle.registry.metrics().then(
          (text) => post({ type: 'metrics', id: m.id, text }),
          () => post({ type: 'metrics', id: m.id, text: '' }),
        );
      } else if (m.type === 'stop') {
        void handle.stop().finally(() => {
          post({ type: 'stopped' });
          port.close();
        });
      }
    });
    post({ type: 'ready', sandbox: handle.local?.sandbox ?? null, sshHosts: handle.ssh ? [...handle.ssh.executors.keys()] : [] });
  },
  (err: unknown) => {
    const e = err instanceof Error ? err : new Error(String(err));
    const code = (e as { code?: unknown }).code;
    post({ type: 'failed', message: e.message, ...(typeof code === 'string' ? { code } : {}), ...(e.stack ? { stack: e.stack } : {}) });
    port.close();
  },
);
