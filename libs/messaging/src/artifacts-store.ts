import type { NatsConnection } from '@nats-io/nats-core';
import { StorageType } from '@nats-io/jetstream';
import { Objm, type ObjectStore } from '@nats-io/obj';
import { isJobId } from '../../contracts/src';

/** The JetStream object store bucket holding the artifacts tar.gz of each attempt, named `<jobId>/<attempt>`. */
export const ARTIFACT_BUCKET = 'jobline-artifacts';

function objectName(jobId: string, attempt: number, step?: number): string {
  // An object name must never come from an unchecked string.
  if (!isJobId(jobId)) throw new Error(`invalid job id ${JSON.stringify(jobId)}`);
  if (!Number.isInteger(attempt) || attempt < 1) throw new Error(`invalid attempt ${attempt}`);
  if (step === undefined) return `${jobId}/${attempt}`;
  if (!Number.isInteger(step) || step < 1) throw new Error(`invalid step ${step}`);
  return `${jobId}/${attempt}/${step}`;
}

/** The artifacts (outputs collected after a run) of each attempt. Runtime-neutral. */
export class ArtifactStore {
  private constructor(private readonly os: ObjectStore) {}

  static async open(nc: NatsConnection, options: { replicas?: number } = {}): Promise<ArtifactStore> {
    const os = await new Objm(nc).create(ARTIFACT_BUCKET, { storage: StorageType.File, replicas: options.replicas ?? 1 });
    return new ArtifactStore(os);
  }

  /** The attempt's artifacts, or with `step` those of one step of a staged job (`<jobId>/<attempt>/<step>`). */
  async put(jobId: string, attempt: number, bytes: Uint8Array, step?: number): Promise<void> {
    await this.os.putBlob({ name: objectName(jobId, attempt, step), description: step === undefined ? 'jobline artifacts (tar.gz)' : `jobline artifacts of step ${step} (tar.gz)` }, bytes);
  }

  /** The attempt's artifacts (or one step's), or null when none were stored. */
  get(jobId: string, attempt: number, step?: number): Promise<Uint8Array | null> {
    return this.os.getBlob(objectName(jobId, attempt, step));
  }

  /** Removes the artifacts of attempts 1..attempts of a job, and those of the given steps of each attempt. */
  async deleteJob(jobId: string, attempts: number, steps: readonly number[] = []): Promise<void> {
    for (let a = 1; a <= attempts; a++) {
      await this.os.delete(objectName(jobId, a)).catch(() => undefined);
      for (const s of steps) await this.os.delete(objectName(jobId, a, s)).catch(() => undefined);
    }
  }
}
