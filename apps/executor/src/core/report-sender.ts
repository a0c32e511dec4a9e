import type { JetStreamClient } from '@nats-io/jetstream';
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/nats-core';
import { AttemptReportSchema, subjects, type AttemptReport } from '../../../../libs/contracts/src';
import { OUTBOX_KEY, reportKey, type ReportOutbox } from './report-outbox.port';

export interface ReportSenderLogger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

export interface ReportSenderOptions {
  js: JetStreamClient;
  outbox: ReportOutbox;
  logger: ReportSenderLogger;
  /** How long one publish waits for JetStream's ack. */
  ackTimeoutMs: number;
  /** Back-off between tries: from retryMinMs, doubling, up to retryMaxMs; tries go on until stop(). */
  retryMinMs: number;
  retryMaxMs: number;
  /** True once the connection is closed for good: tries stop (the report stays in the outbox). */
  isClosed: () => boolean;
}

/**
 * Delivers finished reports at least once: each is stored in the outbox before it is first
 * published and removed only after JetStream acknowledged it; meanwhile it is re-published
 * with back-off, as long as it takes. Its key is the Nats-Msg-Id, so a report that was stored
 * but whose ack was lost is dropped as a duplicate, and a late duplicate is a no-op for the decider.
 */
export class ReportSender {
  private readonly inflight = new Map<string, Promise<void>>();
  /** Reports on their way into the outbox (written, not yet synced). */
  private readonly storing = new Set<string>();
  private readonly stopping = new AbortController();

  constructor(private readonly o: ReportSenderOptions) {}

  /** Reports in the outbox (their write there done) and not yet acknowledged. */
  get pending(): number {
    let n = 0;
    for (const key of this.inflight.keys()) if (!this.storing.has(key)) n++;
    return n;
  }

  /**
   * Resolves once the report is in the outbox (or, if the outbox cannot be written, with the
   * error logged); delivery goes on in the background. The first publish does not wait for the
   * outbox's fsyncs (about 2 ms each here, on the path of every job's completion): the report's
   * bytes are written before it leaves, and a machine crash before the fsyncs end lost the
   * report before too (it was not yet sent). It is removed from the outbox only once both the
   * ack and the outbox's write are done, so a fast ack cannot leave a stale copy behind.
   */
  async send(report: AttemptReport, trace?: Readonly<Record<string, string>> | null): Promise<void> {
    const key = reportKey(report);
    const text = JSON.stringify(report);
    this.storing.add(key);
    const stored = this.o.outbox
      .put(key, text)
      .then(
        () => undefined,
        (err: unknown) => this.o.logger.error({ err, jobId: report.jobId, attempt: report.attempt }, 'cannot write the report to the outbox; sending it without a durable copy'),
      )
      .finally(() => this.storing.delete(key));
    // The attempt's trace context rides in the headers (a report re-sent from the outbox after a restart goes without).
    let h: MsgHdrs | undefined;
    if (trace) {
      h = natsHeaders();
      for (const k of Object.keys(trace)) h.set(k, trace[k]);
    }
    this.deliver(key, report.jobId, text, h, stored);
    await stored;
  }

  /** Resolves once the report under this key is acknowledged (or given up on at stop()); at once when none is under way. */
  delivered(key: string): Promise<void> {
    return this.inflight.get(key) ?? Promise.resolve();
  }

  /** Re-sends what a previous run left in the outbox; returns how many. Entries that are not reports are left alone, with a warning. */
  async resume(): Promise<number> {
    let n = 0;
    for (const { key, text } of await this.o.outbox.list()) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      const r = AttemptReportSchema.safeParse(parsed);
      if (!OUTBOX_KEY.test(key) || !r.success || reportKey(r.data) !== key) {
        this.o.logger.warn({ key }, 'an outbox entry is not a report of this executor; left in place');
        continue;
      }
      this.deliver(key, r.data.jobId, text);
      n++;
    }
    if (n > 0) this.o.logger.info({ reports: n }, 're-sending reports a previous run left in the outbox');
    return n;
  }

  /** Waits up to `ms` for the deliveries under way, then gives up on them: they stay in the outbox for the next start. */
  async stop(ms: number): Promise<void> {
    if (this.inflight.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([Promise.allSettled([...this.inflight.values()]), new Promise((r) => (timer = setTimeout(r, ms)))]);
      clearTimeout(timer);
    }
    this.stopping.abort();
    await Promise.allSettled([...this.inflight.values()]);
  }

  private deliver(key: string, jobId: string, text: string, headers?: MsgHdrs, stored: Promise<void> = Promise.resolve()): void {
    if (this.inflight.has(key) || this.stopping.signal.aborted) return;
    const p = this.publishUntilAcked(key, jobId, text, headers, stored).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
  }

  private async publishUntilAcked(key: string, jobId: string, text: string, headers: MsgHdrs | undefined, stored: Promise<void>): Promise<void> {
    let delay = this.o.retryMinMs;
    let failures = 0;
    for (;;) {
      if (this.stopping.signal.aborted) return;
      if (this.o.isClosed()) {
        this.o.logger.warn({ jobId, key }, 'the connection is closed; the report stays in the outbox for the next start');
        return;
      }
      try {
        await this.o.js.publish(subjects.report(jobId), text, { msgID: key, timeout: this.o.ackTimeoutMs, ...(headers ? { headers } : {}) });
        break;
      } catch (err) {
        failures++;
        // One warning per report, not one per try: an outage must not flood the log.
        if (failures === 1) this.o.logger.warn({ err, jobId, key }, 'report not acknowledged yet; it is kept and re-sent until it is');
        await sleep(delay, this.stopping.signal);
        delay = Math.min(delay * 2, this.o.retryMaxMs);
      }
    }
    if (failures > 0) this.o.logger.info({ jobId, key, tries: failures + 1 }, 'report delivered');
    // Its write into the outbox may still be under way: removed after it, or a stale copy would be left.
    await stored;
    try {
      await this.o.outbox.remove(key);
    } catch (err) {
      // Sent again by the next start: a duplicate the decider ignores.
      this.o.logger.warn({ err, key }, 'cannot remove a delivered report from the outbox');
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
