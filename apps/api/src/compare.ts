import type { JobStatus, JobView } from '../../../libs/contracts/src';

/** What a comparison looks at of one finished job. */
export interface ComparedRun {
  id: string;
  status: JobStatus;
  attempt: number;
  exitCode: number | null;
  /** sha256 (hex) of the latest attempt's log; null when its executor reported none. */
  logSha256: string | null;
  /** sha256 (hex) of the latest attempt's artifacts (the tar.gz of GET /v1/jobs/{id}/artifacts); null when it stored none. */
  artifactsSha256: string | null;
  bundleDigest: string | null;
  rerunOf: string | null;
}

/** The three things an exact re-run reproduces. */
export const COMPARED = ['exitCode', 'logSha256', 'artifacts'] as const;
export type Compared = (typeof COMPARED)[number];

/** GET /v1/jobs/{id}/compare/{other} (and gRPC Compare). */
export interface JobComparison {
  /** Exit code, log digest and artifact digests all the same (a missing log digest is never the same). */
  identical: boolean;
  same: Record<Compared, boolean>;
  /** Those not the same, in COMPARED order. */
  differences: Compared[];
  a: ComparedRun;
  b: ComparedRun;
}

export function comparedRun(view: JobView, artifactsSha256: string | null): ComparedRun {
  return {
    id: view.id,
    status: view.status,
    attempt: view.attempt,
    exitCode: view.exitCode,
    logSha256: view.logSha256,
    artifactsSha256,
    bundleDigest: view.bundleDigest,
    rerunOf: view.rerunOf,
  };
}

/**
 * Compares two finished runs. A log digest counts only when both have one (an attempt
 * recorded before digests existed proves nothing); no artifacts on either side is the same.
 */
export function compareRuns(a: ComparedRun, b: ComparedRun): JobComparison {
  const same: Record<Compared, boolean> = {
    exitCode: a.exitCode === b.exitCode,
    logSha256: a.logSha256 !== null && a.logSha256 === b.logSha256,
    artifacts: a.artifactsSha256 === b.artifactsSha256,
  };
  const differences = COMPARED.filter((k) => !same[k]);
  return { identical: differences.length === 0, same, differences, a, b };
}
