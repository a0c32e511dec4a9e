import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { Registry } from 'prom-client';
import type { JoblineConfig } from '../../../../libs/config/src';
import type { SandboxDetection } from './sandbox/detect';

/**
 * The executors of `jobline dev` on a thread of their own: the same startExecutor as `jobline
 * executor`, on the same configuration, in a worker thread of the dev process. The executor
 * talks to the others over NATS only, so nothing changes for them; what changes is that its
 * work (reading pipes, spawning, the outbox, its NATS socket) no longer takes turns with the
 * orchestrator's and the api's on one event loop: on two cores, one loop was the ceiling.
 */

/** What the dev process asks of the thread's logs. */
export type ThreadLogTarget =
  /** Lines as `jobline executor` would write them, to the process's stdout (format from its TTY). */
  | { kind: 'stdout'; isTTY: boolean }
  /** Message-first lines for a DevLogger (tests and benchmarks count what the services log). */
  | { kind: 'dev-logger' };

export interface ExecutorThreadData {
  config: JoblineConfig;
  log: ThreadLogTarget;
}

/** Thread → dev process. */
export type ExecutorThreadMessage =
  | { type: 'ready'; sandbox: SandboxDetection | null; sshHosts: string[] }
  | { type: 'failed'; message: string; code?: string; stack?: string }
  | { type: 'stdout'; line: string }
  | { type: 'log'; level: 'debug' | 'log' | 'warn' | 'error'; text: string }
  | { type: 'bus-closed'; why: string }
  | { type: 'metrics'; id: number; text: string }
  | { type: 'stopped' };

/** Dev process → thread. */
export type ExecutorThreadRequest = { type: 'metrics'; id: number } | { type: 'stop' };

export interface ExecutorThreadOptions {
  /** Where the thread's log lines go (default: stdout, as `jobline executor` writes them). */
  logger?: { debug?(message: string): void; log(message: string): void; warn(message: string): void; error(message: string): void };
  /** The thread's connection closed for good (refused): the process should stop, as a service does. */
  onBusClosedForGood?: (why: string) => void;
  /** The thread ended without being asked to (a crash): its attempts are lost to the orchestrator's lease. */
  onUnexpectedExit?: (why: string) => void;
}

export interface ExecutorThreadHandle {
  /** The local executor's sandbox as start-up found it, or null without a local executor. */
  sandbox: SandboxDetection | null;
  /** The SSH hosts served, if an inventory is configured. */
  sshHosts: string[];
  /** The thread's metrics (jobline_executor_*), asked of it at each scrape. */
  registry: Registry;
  threadId: number;
  /** Stops taking work, stops running attempts (reported), closes what the thread opened, ends it. */
  stop(): Promise<void>;
  /** Ends the thread at once, as a crash would: nothing stopped, nothing reported (for tests of that path). */
  kill(): Promise<void>;
}

const ROOT = join(__dirname, '../../../..');

/** The compiled entry. Under jest (SWC, sources) it is the build's, in dist/; the CLI and benchmarks run from dist/ already. */
export function executorThreadEntry(): string {
  return __filename.endsWith('.js') ? join(__dirname, 'executor-thread.worker.js') : join(ROOT, 'dist/apps/executor/src/node/executor-thread.worker.js');
}

/** An error from the thread's start, with its code kept (SANDBOX_UNAVAILABLE is refused as a bad configuration). */
class ThreadStartError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

/** Asks the thread for its metrics text at each scrape. */
class ThreadRegistry extends Registry {
  constructor(private readonly ask: () => Promise<string>) {
    super();
  }

  override metrics(): Promise<string> {
    return this.ask();
  }
}

const STOPPED_EXIT_WAIT_MS = 2_000;
const METRICS_WAIT_MS = 5_000;

/** Starts startExecutor(config, local + SSH, streams ready) in a worker thread; resolves once it takes work. */
export function startExecutorThread(config: JoblineConfig, o: ExecutorThreadOptions = {}): Promise<ExecutorThreadHandle> {
  const entry = executorThreadEntry();
  if (!existsSync(entry)) return Promise.reject(new Error(`the executor thread's entry ${entry} is missing: run \`npm run build\``));
  const data: ExecutorThreadData = { config, log: o.logger ? { kind: 'dev-logger' } : { kind: 'stdout', isTTY: Boolean(process.stdout.isTTY) } };
  // trackUnmanagedFds off: the executor hands fds it opened to sockets, which close them
  // themselves; tracked, their numbers would be closed again when the thread ends, whoever in
  // the process holds them by then.
  const worker = new Worker(entry, { workerData: data, trackUnmanagedFds: false });
  const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
  const metricsWaiting = new Map<number, (text: string) => void>();
  let nextMetricsId = 1;
  let stopping: Promise<void> | null = null;
  let ready = false;
  let stoppedReported = false;
  let onStopped: () => void = () => undefined;
  const stoppedOrExited = Promise.race([new Promise<void>((done) => (onStopped = done)), exited.then(() => undefined)]);

  return new Promise<ExecutorThreadHandle>((resolve, reject) => {
    let failure: Error | null = null;
    worker.on('message', (m: ExecutorThreadMessage) => {
      switch (m.type) {
        case 'stdout':
          process.stdout.write(m.line);
          break;
        case 'log': {
          const l = o.logger;
          if (!l) break;
          if (m.level === 'debug') l.debug?.(m.text);
          else l[m.level](m.text);
          break;
        }
        case 'bus-closed':
          o.onBusClosedForGood?.(m.why);
          break;
        case 'metrics':
          metricsWaiting.get(m.id)?.(m.text);
          metricsWaiting.delete(m.id);
          break;
        case 'failed':
          failure = new ThreadStartError(m.message, m.code);
          if (m.stack) failure.stack = m.stack;
          break;
        case 'stopped':
          stoppedReported = true;
          onStopped();
          break;
        case 'ready': {
          ready = true;
          const handle: ExecutorThreadHandle = {
            sandbox: m.sandbox,
            sshHosts: m.sshHosts,
            threadId: worker.threadId,
            registry: new ThreadRegistry(
              () =>
                new Promise<string>((done) => {
                  const id = nextMetricsId++;
                  const timer = setTimeout(() => {
                    metricsWaiting.delete(id);
                    done('');
                  }, METRICS_WAIT_MS);
                  timer.unref();
                  metricsWaiting.set(id, (text) => {
                    clearTimeout(timer);
                    done(text);
                  });
                  worker.postMessage({ type: 'metrics', id } satisfies ExecutorThreadRequest);
                }),
            ),
            stop: () => {
              stopping ??= (async () => {
                worker.postMessage({ type: 'stop' } satisfies ExecutorThreadRequest);
                await stoppedOrExited;
                // Stopped: what is left on its loop (a handle a library keeps) must not keep the process.
                const timer = setTimeout(() => void worker.terminate(), STOPPED_EXIT_WAIT_MS);
                await exited;
                clearTimeout(timer);
              })();
              return stopping;
            },
            kill: async () => {
              await worker.terminate();
            },
          };
          resolve(handle);
          break;
        }
      }
    });
    worker.on('error', (err) => {
      failure ??= err;
    });
    void exited.then((code) => {
      for (const done of metricsWaiting.values()) done('');
      metricsWaiting.clear();
      if (!ready) {
        reject(failure ?? new Error(`the executor thread ended (exit code ${code}) before it was ready`));
        return;
      }
      if (!stopping || !stoppedReported) {
        const why = failure ? `the executor thread crashed: ${failure.message}` : `the executor thread ended (exit code ${code})`;
        o.onUnexpectedExit?.(why);
      }
    });
  });
}
