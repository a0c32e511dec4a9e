import type { NatsConnection, Subscription } from '@nats-io/nats-core';
import { ExecutorHeartbeatSchema, parseWith, subjects, type ExecutorHeartbeat } from '../../../libs/contracts/src';

/** One executor as GET /v1/executors shows it. */
export interface ExecutorInfo {
  id: string;
  instanceId: string;
  kind: ExecutorHeartbeat['kind'];
  capacity: number;
  /** Attempts it was running at its last heartbeat. */
  running: number;
  labels: Record<string, string>;
  sandbox: ExecutorHeartbeat['sandbox'];
  runtime: string;
  startedAt: string;
  /** When its last heartbeat arrived here (ISO-8601). */
  lastSeen: string;
  /** Milliseconds since that heartbeat, by this api's clock (so a client's clock does not matter). */
  heartbeatAgeMs: number;
  /** A heartbeat arrived within the last `aliveMs`. */
  alive: boolean;
  /**
   * For an executor that reaches a host (SSH): 'connected', 'host-key-mismatch' (attempts fail
   * at once), or 'unreachable' once its heartbeats stop (it heartbeats only while it can work).
   */
  state?: string;
  /** Why, e.g. the host-key error. */
  note?: string;
}

export interface ExecutorsRegistryOptions {
  /** An executor silent longer than this is shown as not alive (default 10 s, the orchestrator's lease). */
  aliveMs?: number;
  /** An executor silent longer than this is no longer listed (default 1 h). */
  forgetMs?: number;
  clock?: () => number;
}

/** Executors known from their heartbeats on `jobline.hb.<executorId>` (core NATS), since this process started. */
export class ExecutorsRegistry {
  private readonly seen = new Map<string, { hb: ExecutorHeartbeat; at: number }>();
  private readonly aliveMs: number;
  private readonly forgetMs: number;
  private readonly clock: () => number;
  private sub: Subscription | null = null;

  constructor(
    private readonly nc: NatsConnection,
    options: ExecutorsRegistryOptions = {},
  ) {
    this.aliveMs = options.aliveMs ?? 10_000;
    this.forgetMs = options.forgetMs ?? 3_600_000;
    this.clock = options.clock ?? Date.now;
  }

  start(): void {
    if (this.sub) return;
    const decoder = new TextDecoder();
    this.sub = this.nc.subscribe(subjects.heartbeatsAll, {
      callback: (err, msg) => {
        if (err) return;
        let json: unknown;
        try {
          json = JSON.parse(decoder.decode(msg.data));
        } catch {
          return;
        }
        const hb = parseWith(ExecutorHeartbeatSchema, json);
        if (hb.ok) this.seen.set(hb.value.executorId, { hb: hb.value, at: this.clock() });
      },
    });
  }

  stop(): void {
    this.sub?.unsubscribe();
    this.sub = null;
  }

  list(): ExecutorInfo[] {
    const now = this.clock();
    const out: ExecutorInfo[] = [];
    for (const [id, { hb, at }] of this.seen) {
      if (now - at > this.forgetMs) {
        this.seen.delete(id);
        continue;
      }
      out.push({
        id,
        instanceId: hb.instanceId,
        kind: hb.kind,
        capacity: hb.capacity,
        running: hb.running.length,
        labels: hb.labels,
        sandbox: hb.sandbox,
        runtime: hb.runtime,
        startedAt: hb.startedAt,
        lastSeen: new Date(at).toISOString(),
        heartbeatAgeMs: Math.max(0, now - at),
        alive: now - at <= this.aliveMs,
        ...(hb.state ? { state: now - at <= this.aliveMs ? hb.state : 'unreachable' } : {}),
        ...(hb.note && now - at <= this.aliveMs ? { note: hb.note } : {}),
      });
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
}
