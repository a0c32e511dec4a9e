import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream';
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from '@nats-io/nats-core';
import { ROOT_CONTEXT } from '@opentelemetry/api';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isJobId, JobSpecSchema, STREAMS, subjects, type PackageJobMessage, type PackagingResult } from '../../../libs/contracts/src';
import { BundleStore, sha256Hex, UploadStore } from '../../../libs/messaging/src/bundle-store';
import { ensureStreams } from '../../../libs/messaging/src/streams';
import { SpanKind, TRACERS, contextFromHeaders, endSpan, injectHeaders, startSpan, withSpanContext } from '../../../libs/messaging/src/trace-context';
import { unpackArchive, type ArchiveLimits } from './archive';
import { packFolder, PackagingError, type BundleOptions, type Manifest } from './bundle-builder';
import { fetchDataFile, type DataFetchOptions } from './data-fetch';
import { fetchGitTree, type GitSourceOptions } from './git-source';

/** What a packager may fetch and how; defaults refuse file:// and private addresses. */
export interface PackagerOptions extends BundleOptions {
  git?: GitSourceOptions;
  data?: DataFetchOptions;
  /** Where bundles are assembled (default the OS temp folder); each job gets its own folder, removed after. */
  workDir?: string;
  /** Jobs packaged at once (default 2). */
  concurrency?: number;
  /** Limits on uploaded source archives. */
  archive?: ArchiveLimits;
  /** Told about every result once it is published (metrics); must not throw. */
  onResult?: (result: PackagingResult) => void;
  /** Back-off ceiling when the consumer must be re-created (the bus was away, its consumer gone): from 250 ms, doubling (default 5000 ms). */
  retryMaxMs?: number;
  /** How long a result publish waits for JetStream's ack before the order is handed back for another try (default 5000 ms). */
  publishTimeoutMs?: number;
}

export interface PackagerLogger {
  log(message: string): void;
  warn(message: string): void;
}

export const PACKAGER_CONSUMER = 'packager';
/** How long a package order delivered to a packager waits for its ack before another packager gets it. */
export const PACKAGER_ACK_WAIT_MS = 60_000;

/**
 * Builds the bundles of jobs that carry a source: takes `jobline.pkg.work.<jobId>` orders,
 * fetches the git commit and data, packs a deterministic tar.gz, stores it by digest and
 * publishes the result on `jobline.pkg.done.<jobId>` for the orchestrator to record.
 * A separate consumer: a slow clone never holds up the orchestrator.
 */
export class Packager {
  private messages: ConsumerMessages | null = null;
  private loop: Promise<void> | null = null;
  private readonly inflight = new Set<Promise<void>>();
  private readonly stopping = new AbortController();

  constructor(
    private readonly nc: NatsConnection,
    private readonly store: BundleStore,
    private readonly logger: PackagerLogger,
    private readonly o: PackagerOptions = {},
    private readonly uploads: UploadStore | null = null,
  ) {}

  static async start(nc: NatsConnection, logger: PackagerLogger, options: PackagerOptions = {}): Promise<Packager> {
    const p = new Packager(nc, await BundleStore.open(nc), logger, options, await UploadStore.open(nc));
    await p.start();
    return p;
  }

  /** Ensures its consumer (the bus must be there), then takes package orders until stop(), through reconnects of any length. */
  async start(): Promise<void> {
    await this.ensureConsumer();
    this.loop = this.consumeLoop();
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.messages?.close().catch(() => undefined);
    await this.loop;
    await Promise.allSettled([...this.inflight]);
  }

  private async ensureConsumer(): Promise<void> {
    const jsm = await jetstreamManager(this.nc);
    try {
      await jsm.consumers.info(STREAMS.packages, PACKAGER_CONSUMER);
    } catch (err) {
      const message = String((err as Error).message);
      if (/stream not found/i.test(message)) await ensureStreams(jsm);
      else if (!/consumer not found/i.test(message)) throw err;
      await jsm.consumers.add(STREAMS.packages, {
        durable_name: PACKAGER_CONSUMER,
        filter_subject: subjects.packageWorkAll,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: PACKAGER_ACK_WAIT_MS * 1_000_000,
      });
    }
  }

  /**
   * consume() re-issues its pulls after a reconnect by itself; when it ends anyway (its consumer
   * or stream was gone for a while), the consumer is ensured and consumed again, with back-off.
   * A closed connection ends the loop: the packager's main exits then.
   */
  private async consumeLoop(): Promise<void> {
    const concurrency = this.o.concurrency ?? 2;
    const maxDelay = this.o.retryMaxMs ?? 5000;
    let delay = 250;
    let failing = false;
    let first = true;
    while (!this.stopping.signal.aborted && !this.nc.isClosed()) {
      try {
        if (!first) await this.ensureConsumer();
        first = false;
        const consumer = await jetstream(this.nc).consumers.get(STREAMS.packages, PACKAGER_CONSUMER);
        // Ends when its consumer is gone (deleted, or the bus lost its store): it is made again below.
        const messages = await consumer.consume({ max_messages: concurrency, abort_on_missing_resource: true });
        this.messages = messages;
        if (this.stopping.signal.aborted) {
          await messages.close();
          break;
        }
        if (failing) this.logger.log('packager: taking package orders again');
        failing = false;
        for await (const m of messages) {
          delay = 250;
          const job = this.handle(m).finally(() => this.inflight.delete(job));
          this.inflight.add(job);
          if (this.inflight.size >= concurrency) await Promise.race(this.inflight);
        }
      } catch (err) {
        if (this.stopping.signal.aborted) break;
        // Once per streak: a long outage must not flood the log.
        if (!failing) this.logger.warn(`packager: taking package orders failed, retrying with back-off: ${(err as Error).message}`);
        failing = true;
      }
      if (this.stopping.signal.aborted || this.nc.isClosed()) break;
      await sleep(delay, this.stopping.signal);
      delay = Math.min(delay * 2, maxDelay);
    }
  }

  private async handle(m: JsMsg): Promise<void> {
    let msg: PackageJobMessage;
    try {
      msg = m.json<PackageJobMessage>();
    } catch {
      m.term();
      return;
    }
    if (msg?.kind !== 'package' || !isJobId(msg.jobId)) {
      this.logger.warn('packager: an invalid package order was dropped');
      m.term();
      return;
    }
    // The job's trace (from the relay's run order headers) goes on through packaging to the result.
    const span = startSpan(TRACERS.packager, 'package', contextFromHeaders(m.headers), {
      kind: SpanKind.CONSUMER,
      attributes: { 'messaging.system': 'nats', 'messaging.destination.name': m.subject, 'jobline.job.id': msg.jobId, 'jobline.owner': msg.owner },
    });
    // Long packaging: tell JetStream we are alive so the order is not redelivered meanwhile.
    const keepAlive = setInterval(() => m.working(), 20_000);
    let result: PackagingResult;
    try {
      result = await this.build(msg);
    } catch (err) {
      const reason = err instanceof PackagingError ? err.message : `packaging failed unexpectedly: ${(err as Error).message}`;
      this.logger.warn(`packager: job ${msg.jobId}: ${reason}`);
      result = { kind: 'failed', jobId: msg.jobId, reason };
    } finally {
      clearInterval(keepAlive);
    }
    span?.setAttribute('jobline.packaging.result', result.kind);
    try {
      let h: MsgHdrs | undefined;
      if (span) injectHeaders((h = natsHeaders()), withSpanContext(ROOT_CONTEXT, span));
      await jetstream(this.nc).publish(subjects.packaged(msg.jobId), JSON.stringify(result), { msgID: `${msg.jobId}:packaged`, timeout: this.o.publishTimeoutMs ?? 5000, ...(h ? { headers: h } : {}) });
      endSpan(span);
      m.ack();
      this.o.onResult?.(result);
      // The bundle now holds the archive's content; the upload itself is no longer needed.
      if (result.kind === 'packaged' && msg.spec.source && 'archive' in msg.spec.source) await this.uploads?.delete(msg.jobId);
    } catch (err) {
      this.logger.warn(`packager: job ${msg.jobId}: result not published, will retry: ${(err as Error).message}`);
      endSpan(span, err);
      m.nak(5000);
    }
  }

  /** Builds and stores one job's bundle. */
  async build(msg: PackageJobMessage): Promise<Extract<PackagingResult, { kind: 'packaged' }>> {
    const parsed = JobSpecSchema.safeParse(msg.spec);
    if (!parsed.success) throw new PackagingError('the job spec is invalid');
    const spec = parsed.data;
    const dir = await mkdtemp(join(this.o.workDir ?? tmpdir(), `jobline-pkg-${msg.jobId}-`));
    const tree = join(dir, 'bundle');
    try {
      await mkdir(tree);
      const git = spec.source && 'git' in spec.source ? spec.source.git : undefined;
      let archiveSha: string | undefined;
      if (spec.source && 'archive' in spec.source) {
        const bytes = await this.uploads?.get(msg.jobId);
        if (!bytes) throw new PackagingError('the uploaded archive of this job is not stored (uploads expire after 7 days); submit it again');
        archiveSha = await sha256Hex(bytes);
        const r = await unpackArchive(Buffer.from(bytes), tree, this.o.archive);
        this.logger.log(`packager: job ${msg.jobId}: unpacked a ${r.format} of ${r.entries} entries`);
      }
      // Per-URL mirrors under the work folder unless configured otherwise (mirrorDir: undefined turns them off).
      const gitOptions: GitSourceOptions = { mirrorDir: join(this.o.workDir ?? tmpdir(), 'jobline-git-mirrors'), ...this.o.git };
      // The commit is read straight out of git into memory: no checkout, nothing re-read from disk.
      const source = git ? await fetchGitTree(git.url, git.commit, gitOptions, (line) => this.logger.log(`packager: job ${msg.jobId}: ${line}`)) : undefined;
      const data: NonNullable<Manifest['data']> = [];
      for (const item of spec.data ?? []) {
        this.logger.log(`packager: job ${msg.jobId}: downloading ${item.url} → ${item.path}`);
        data.push({ path: item.path, url: item.url, sha256: await fetchDataFile(item, tree, this.o.data, source) });
      }
      const built = await packFolder(tree, spec, { ...(git ? { git } : {}), ...(archiveSha ? { archive: { sha256: archiveSha } } : {}), data }, { baseImage: this.o.baseImage }, source);
      const { digest, stored } = await this.store.put(built.bytes);
      this.logger.log(`packager: job ${msg.jobId}: bundle ${digest} (${built.bytes.length} bytes, ${built.manifest.files.length} files${stored ? '' : ', already stored'})`);
      return {
        kind: 'packaged',
        jobId: msg.jobId,
        bundleDigest: digest,
        size: built.bytes.length,
        ...(git ? { commit: git.commit } : {}),
        ...(data.length ? { dataDigests: Object.fromEntries(data.map((d) => [d.path, d.sha256])) } : {}),
      };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}
