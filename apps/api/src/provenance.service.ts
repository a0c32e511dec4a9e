import { Inject, Injectable } from '@nestjs/common';
import { IllegalStateError, JoblineError, isTerminal, jobStreamName } from '../../../libs/contracts/src';
import { signStatement, type DsseEnvelope } from '../../../libs/event-store/src/attestation';
import { ArtifactStore } from '../../../libs/messaging/src/artifacts-store';
import { jobStatement } from './attestation';
import { trustedHeads } from '../../../libs/event-store/src/chain-checkpoint';
import { verifyStore, verifyStream, type ChainVerification } from '../../../libs/event-store/src/chain-verifier';
import { API_CONTEXT, type ApiContext } from './api.context';
import type { Caller } from './api-tokens';
import { decodeKnown, JobsService } from './jobs.service';

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

  private artifacts: Promise<ArtifactStore> | null = null;

  /**
   * The signed provenance of a finished job (DSSE envelope of an in-toto statement), built from
   * its stream as stored and signed with this api's key; 404 exactly as for a job the caller
   * may not see, 409 while it has not finished, 503 without a signing key.
   */
  async attestation(caller: Caller, id: string, now: Date = new Date()): Promise<DsseEnvelope> {
    const key = this.ctx.signingKey;
    const visible = this.jobs.visible(caller, id);
    if (!key) throw new JoblineError('unavailable', 'this api has no signing key (JOBLINE_SIGNING_KEY_FILE), so it cannot sign attestations');
    const records = await this.ctx.eventStore.readStream(jobStreamName(visible.id));
    const events = decodeKnown(records);
    // Terminal in the read model means the projection has the attempts (only JobPurged may follow).
    if (!isTerminal(visible.status)) {
      throw new IllegalStateError(`job ${visible.id} has not finished (${visible.status}): it is attested once it has`, { problem: { jobStatus: visible.status } });
    }
    let artifacts: { attempt: number; bytes: Uint8Array } | null = null;
    if (visible.attempt > 0 && !visible.purged) {
      this.artifacts ??= ArtifactStore.open(this.ctx.nc);
      const bytes = await (await this.artifacts).get(visible.id, visible.attempt);
      if (bytes) artifacts = { attempt: visible.attempt, bytes };
    }
    const { view, statement } = jobStatement({ records, events, artifacts, now: now.toISOString() });
    if (statement.subject.length === 0) {
      throw new IllegalStateError(`job ${view.id} has nothing to attest by digest: no bundle, no artifacts, and its events were recorded before the hash chain existed`);
    }
    return signStatement(statement, key);
  }

  /** The whole log, against the stored checkpoints this api's key signed: admins only (it names every job's stream). */
  async verifyAll(caller: Caller): Promise<ChainVerification> {
    if (!caller.admin) throw new JoblineError('permission_denied', 'verifying the whole store is for admins; verify your own jobs at /v1/jobs/{id}/verify');
    const stored = (await this.ctx.chainCheckpoints?.list()) ?? [];
    const { trusted, untrusted } = trustedHeads(stored, this.ctx.signingKey ? [this.ctx.signingKey.publicKey] : []);
    return { ...(await verifyStore(this.ctx.eventStore, { trusted })), checkpointsIgnored: untrusted };
  }
}
