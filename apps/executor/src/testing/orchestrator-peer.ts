import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import {
  AttemptReportSchema,
  ClaimRequestSchema,
  ExecutorHeartbeatSchema,
  subjects,
  type AttemptReport,
  type ClaimReply,
  type ClaimRequest,
  type ExecutorHeartbeat,
  type LeaseReply,
} from '../../../../libs/contracts/src';

/** What the peer does with a claim: grant it, refuse it (stale), or leave it unanswered. */
export type ClaimDecision = 'grant' | 'refuse' | 'ignore';

export interface OrchestratorPeerOptions {
  nc: NatsConnection;
  /** Default: grant every claim. */
  decide?: (claim: ClaimRequest) => ClaimDecision;
  /** The lease announced in lease replies (default 10,000 ms). */
  leaseMs?: number;
}

const key = (jobId: string, attempt: number) => `${jobId}/${attempt}`;

/**
 * Tests and benchmarks of the executor alone: the orchestrator's side of the claim and lease
 * protocol over a real NATS connection, with no event store. It grants claims (or as told),
 * answers heartbeats with a lease reply listing the attempts it granted that have not
 * reported finished, and records what it saw. `forget()` drops an attempt from the leases,
 * as an orchestrator does with one it declared lost.
 */
export class OrchestratorPeer {
  readonly claims: ClaimRequest[] = [];
  readonly heartbeats: ExecutorHeartbeat[] = [];
  readonly finished: Extract<AttemptReport, { kind: 'finished' }>[] = [];
  /** Heartbeats are answered while this is true. */
  answerHeartbeats = true;
  decide: (claim: ClaimRequest) => ClaimDecision;
  private readonly current = new Map<string, { executorId: string; jobId: string; attempt: number }>();
  private readonly subs: Subscription[] = [];
  private readonly leaseMs: number;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly o: OrchestratorPeerOptions) {
    this.decide = o.decide ?? (() => 'grant');
    this.leaseMs = o.leaseMs ?? 10_000;
  }

  start(): this {
    const { nc } = this.o;
    this.subs.push(
      nc.subscribe(subjects.claimsAll, {
        callback: (_err, m) => {
          const parsed = ClaimRequestSchema.safeParse(json(m.data));
          if (!parsed.success) return void m.respond(JSON.stringify({ granted: false, code: 'invalid_argument', message: 'not a claim' } satisfies ClaimReply));
          const claim = parsed.data;
          this.claims.push(claim);
          this.changed();
          const decision = this.decide(claim);
          if (decision === 'ignore') return;
          if (decision === 'refuse') return void m.respond(JSON.stringify({ granted: false, code: 'stale', message: 'refused by the test' } satisfies ClaimReply));
          this.current.set(key(claim.jobId, claim.attempt), { executorId: claim.executorId, jobId: claim.jobId, attempt: claim.attempt });
          m.respond(JSON.stringify({ granted: true } satisfies ClaimReply));
        },
      }),
      nc.subscribe(subjects.heartbeatsAll, {
        callback: (_err, m) => {
          const parsed = ExecutorHeartbeatSchema.safeParse(json(m.data));
          if (!parsed.success) return;
          const hb = parsed.data;
          this.heartbeats.push(hb);
          this.changed();
          if (!this.answerHeartbeats || !m.reply) return;
          const reply: LeaseReply = {
            executorId: hb.executorId,
            instanceId: hb.instanceId,
            current: [...this.current.values()].filter((c) => c.executorId === hb.executorId).map(({ jobId, attempt }) => ({ jobId, attempt })),
            leaseMs: this.leaseMs,
            sentAt: new Date().toISOString(),
          };
          m.respond(JSON.stringify(reply));
        },
      }),
      nc.subscribe(subjects.reportsAll, {
        callback: (_err, m) => {
          const parsed = AttemptReportSchema.safeParse(json(m.data));
          if (!parsed.success || parsed.data.kind !== 'finished') return;
          this.finished.push(parsed.data);
          this.current.delete(key(parsed.data.jobId, parsed.data.attempt));
          this.changed();
        },
      }),
    );
    return this;
  }

  /** Drops an attempt from the lease replies, as an orchestrator does once it declared it lost. */
  forget(jobId: string, attempt: number): void {
    this.current.delete(key(jobId, attempt));
  }

  /** Resolves once `probe` holds, re-checked on every claim, heartbeat and report; rejects after timeoutMs. */
  until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const v = probe();
        if (v === undefined || v === false) return false;
        done();
        resolve(v);
        return true;
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const listener = () => void check();
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(listener);
      };
      if (check()) return;
      this.listeners.add(listener);
    });
  }

  stop(): void {
    for (const s of this.subs.splice(0)) s.unsubscribe();
  }

  private changed(): void {
    for (const l of [...this.listeners]) l();
  }
}

function json(data: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch {
    return undefined;
  }
}
