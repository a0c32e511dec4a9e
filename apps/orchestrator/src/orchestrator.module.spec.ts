import { CONSUMER_DEFAULTS } from '../../../libs/messaging/src/jetstream.transport';
import { orchestratorConsumerTimings } from './orchestrator.module';

describe('orchestratorConsumerTimings', () => {
  it('alone: the transport defaults (30 s ack wait, 5 s pulls)', () => {
    expect(orchestratorConsumerTimings()).toEqual({ ackWaitMs: CONSUMER_DEFAULTS.ackWaitMs, pullExpiresMs: CONSUMER_DEFAULTS.pullExpiresMs });
  });

  it('with a lease: ack wait = the lease within 1..30 s, pulls expiring after at most that and 5 s', () => {
    expect(orchestratorConsumerTimings({ leaseMs: 10_000 })).toEqual({ ackWaitMs: 10_000, pullExpiresMs: 5_000 });
    expect(orchestratorConsumerTimings({ leaseMs: 2_000 })).toEqual({ ackWaitMs: 2_000, pullExpiresMs: 2_000 });
    expect(orchestratorConsumerTimings({ leaseMs: 1_000 })).toEqual({ ackWaitMs: 1_000, pullExpiresMs: 1_000 });
    expect(orchestratorConsumerTimings({ leaseMs: 120_000 })).toEqual({ ackWaitMs: 30_000, pullExpiresMs: 5_000 });
  });
});
