import type { DsseEnvelope } from '../../../../libs/event-store/src/attestation';
import type { ComparedRun, JobComparison } from '../compare';
import { STATUS_TO_PB } from './jobs.grpc-mapping';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader messages are untyped */

/** The REST envelope as the proto's: base64 text becomes the bytes it stands for. */
export function envelopeToPb(e: DsseEnvelope): any {
  return {
    payloadType: e.payloadType,
    payload: Buffer.from(e.payload, 'base64'),
    signatures: e.signatures.map((s) => ({ keyid: s.keyid, sig: Buffer.from(s.sig, 'base64') })),
  };
}

function runToPb(r: ComparedRun): any {
  return {
    id: r.id,
    status: STATUS_TO_PB[r.status],
    attempt: r.attempt,
    ...(r.exitCode !== null ? { exitCode: r.exitCode } : {}),
    ...(r.logSha256 !== null ? { logSha256: r.logSha256 } : {}),
    ...(r.artifactsSha256 !== null ? { artifactsSha256: r.artifactsSha256 } : {}),
    ...(r.bundleDigest !== null ? { bundleDigest: r.bundleDigest } : {}),
    ...(r.rerunOf !== null ? { rerunOf: r.rerunOf } : {}),
  };
}

export function comparisonToPb(c: JobComparison): any {
  return {
    identical: c.identical,
    sameExitCode: c.same.exitCode,
    sameLogSha256: c.same.logSha256,
    sameArtifacts: c.same.artifacts,
    differences: c.differences,
    a: runToPb(c.a),
    b: runToPb(c.b),
  };
}

/* eslint-enable @typescript-eslint/no-explicit-any */
