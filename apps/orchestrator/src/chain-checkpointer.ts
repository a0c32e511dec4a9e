import type { ChainCheckpoint, ChainCheckpointStore, SigningKey } from '../../../libs/event-store/src/chain-checkpoint';
import { checkpointSignedBy, signCheckpoint } from '../../../libs/event-store/src/chain-checkpoint';
import { GENESIS_HEAD, readChainHead, type ChainHead } from '../../../libs/event-store/src/esdb.chain';
import type { EventStore } from '../../../libs/event-store/src/event-store.port';

export interface ChainCheckpointerOptions {
  eventStore: EventStore;
  checkpoints: ChainCheckpointStore;
  key: SigningKey;
  /** Hands a new checkpoint to the bus (core NATS publish); a failure is logged, the stored one stays. */
  publish(checkpoint: ChainCheckpoint): void;
  intervalMs: number;
  now?: () => Date;
  onError?(error: unknown): void;
}

/**
 * Signs the head of the event hash chain every `intervalMs` when it moved: the orchestrator's
 * statement of what the log held, kept in the store and published, so that a later rewrite
 * with recomputed hashes or a truncated tail is detectable by whoever holds one. On a store
 * whose log chain is computed (EventStoreDB) it folds the log into the head itself, from its
 * own newest checkpoint on (or the start), and signs that.
 */
export class ChainCheckpointer {
  private timer: NodeJS.Timeout | undefined;
  private signedPosition = -1;
  /** The computed chain's head as far as folded (globalChain 'computed'); undefined until resumed. */
  private computed: ChainHead | undefined;
  private running: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: ChainCheckpointerOptions) {}

  start(): void {
    if (this.timer || this.o.intervalMs <= 0) return;
    // Another orchestrator may have signed meanwhile (it led while this one stood by).
    this.signedPosition = -1;
    this.computed = undefined;
    this.timer = setInterval(() => void this.tick(), this.o.intervalMs);
    this.timer.unref();
  }

  /**
   * Stops the timer and signs the final head, so a shutdown leaves the newest history covered;
   * `signFinal: false` when it must not act any more (this orchestrator no longer leads).
   */
  async stop(opts: { signFinal?: boolean } = {}): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    if (opts.signFinal ?? true) await this.tick();
    else await this.running;
  }

  /** Signs the current head if it is chained and newer than the last one signed; the checkpoint, or null. */
  tick(): Promise<ChainCheckpoint | null> {
    const next = this.running.then(() => this.signHead()).catch((error: unknown) => {
      this.o.onError?.(error);
      return null;
    });
    this.running = next;
    return next;
  }

  private async signHead(): Promise<ChainCheckpoint | null> {
    if (this.signedPosition < 0) this.signedPosition = (await this.o.checkpoints.latest())?.position ?? 0;
    const head = this.o.eventStore.globalChain === 'computed' ? await this.computedHead() : await this.storedHead();
    if (!head || head.position <= this.signedPosition) return null;
    const checkpoint = signCheckpoint(head, this.o.key, (this.o.now?.() ?? new Date()).toISOString());
    await this.o.checkpoints.save(checkpoint);
    this.signedPosition = head.position;
    try {
      this.o.publish(checkpoint);
    } catch (error) {
      this.o.onError?.(error);
    }
    return checkpoint;
  }

  /** The newest event's stored log link, when it is chained and newer than the last signed. */
  private async storedHead(): Promise<ChainHead | null> {
    const head = await this.o.eventStore.headPosition();
    if (head <= this.signedPosition) return null;
    const [event] = await this.o.eventStore.readAll({ after: head - 1, maxCount: 1 });
    return event?.chain?.chainHash ? { position: event.position, chainHash: event.chain.chainHash } : null;
  }

  /**
   * The log folded up to its head. Resumed from this key's newest stored checkpoint, so a
   * restart folds only what came after it, and a history rewritten before it still differs
   * from what is signed next; from the start when there is none (or another key signed it).
   */
  private async computedHead(): Promise<ChainHead | null> {
    if (!this.computed) {
      const latest = await this.o.checkpoints.latest();
      this.computed = latest && checkpointSignedBy(latest, [this.o.key.publicKey]) ? { position: latest.position, chainHash: latest.chainHash } : GENESIS_HEAD;
    }
    this.computed = await readChainHead(this.o.eventStore, this.computed);
    return this.computed.position >= 0 ? this.computed : null;
  }
}
