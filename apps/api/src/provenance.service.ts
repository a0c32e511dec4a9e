import { Inject, Injectable } from '@nestjs/common';
import { JoblineError, jobStreamName } from '../../../libs/contracts/src';
import { trustedHeads } from '../../../libs/event-store/src/chain-checkpoint';
import { verifyStore, verifyStream, type ChainVerification } from '../../../libs/event-store/src/chain-verifier';
import { API_CONTEXT, type ApiContext } from './api.context';
import type { Caller } from './api-tokens';
import { JobsService } from './jobs.service';

/** Provable history: chain verification of one job or of the whole store. */
@Injectable()
export class ProvenanceService {
  constructor(
    @Inject(API_CONTEXT) private readonly ctx: ApiContext,
    @Inject(JobsService) private readonly jobs: JobsService,
  ) {}

  /** The job's own chain (revisions contiguous, every stream link); 404 exactly as for a job the caller may not see. */
  async verifyJob(caller: Caller, id: string): Promise<ChainVerification> {
    const job = this.jobs.visible(caller, id);
    return verifyStream(this.ctx.eventStore, jobStreamName(job.id));
  }

  /** The whole log, against the stored checkpoints this api's key signed: admins only (it names every job's stream). */
  async verifyAll(caller: Caller): Promise<ChainVerification> {
    if (!caller.admin) throw new JoblineError('permission_denied', 'verifying the whole store is for admins; verify your own jobs at /v1/jobs/{id}/verify');
    const stored = (await this.ctx.chainCheckpoints?.list()) ?? [];
    const { trusted, untrusted } = trustedHeads(stored, this.ctx.signingKey ? [this.ctx.signingKey.publicKey] : []);
    return { ...(await verifyStore(this.ctx.eventStore, { trusted })), checkpointsIgnored: untrusted };
  }
}
