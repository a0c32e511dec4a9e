/**
 * nats-core's one-answer request (RequestOne, behind every `nc.request` and every JetStream
 * publish) ends in `cancel()`, also once it has its answer, and `cancel()` rejects its promise
 * with a new RequestError("cancelled"): an Error with its captured stack for every answered
 * request, rejecting a promise that is already settled, which does nothing. Under the jobs
 * benchmark that was 3 % of the orchestrator's CPU and of the executor's.
 *
 * Installed once per process (connectNats does it): `resolver` marks the request answered
 * before nats-core's own resolver settles it; `cancel()` of an answered request, without an
 * error of its own, then only stops the timer and leaves the muxer, as before, without the
 * rejection that could change nothing. A request cancelled before its answer (a timeout, a
 * closed connection, a failed publish) goes through nats-core's `cancel()` unchanged.
 */
// nats-core exports RequestOne only from its "./internal" entry, which this project's
// module resolution (node10) cannot type: required, with the two methods this needs. Under
// Deno (the executor runs this file as an ES module there) there is no `require`: nothing is
// installed, and requests go through nats-core as they are.
function nodeRequestOne(): { prototype: unknown } | undefined {
  if (typeof require !== 'function') return undefined;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('@nats-io/nats-core/internal') as { RequestOne?: { prototype: unknown } }).RequestOne;
}

interface RequestOneInternals {
  timer?: { cancel(): void };
  mux: { cancel(request: unknown): void };
  resolver(err: Error | null, msg: unknown): void;
  cancel(err?: Error): void;
  /** Ours: set once the answer (a message or an error) arrived. */
  joblineAnswered?: boolean;
  /** Ours: on the prototype once installed. */
  joblineQuietCancel?: true;
}

/** True once installed (false under Deno, or if this nats-core has no RequestOne of the expected shape: it is then left as it is). */
export function installQuietRequestCancel(): boolean {
  const proto = nodeRequestOne()?.prototype as RequestOneInternals | undefined;
  if (!proto || typeof proto.resolver !== 'function' || typeof proto.cancel !== 'function') return false;
  if (proto.joblineQuietCancel) return true;
  const resolver = proto.resolver;
  const cancel = proto.cancel;
  proto.resolver = function (this: RequestOneInternals, err: Error | null, msg: unknown): void {
    this.joblineAnswered = true;
    resolver.call(this, err, msg);
  };
  proto.cancel = function (this: RequestOneInternals, err?: Error): void {
    if (err !== undefined || !this.joblineAnswered) {
      cancel.call(this, err);
      return;
    }
    this.timer?.cancel();
    this.mux.cancel(this);
  };
  proto.joblineQuietCancel = true;
  return true;
}
