import { z } from 'zod';

/** Owners are NATS subject tokens: letters, digits, '_' and '-'. */
export const OwnerSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'owner must be 1-64 of [A-Za-z0-9_-]');
/** Job ids are UUIDs (lowercase, with dashes): safe in subjects, stream names and paths. */
export const JobIdSchema = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'jobId must be a lowercase UUID');
/** Executor ids are subject tokens too. */
export const ExecutorIdSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'executorId must be 1-64 of [A-Za-z0-9_-]');

/**
 * A request id (REST X-Request-Id, gRPC x-request-id, the Jobline-Request-Id header of a
 * command): 1-128 of [A-Za-z0-9._:-], so it is printable and safe in logs and headers.
 */
export const RequestIdSchema = z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, 'request id must be 1-128 of [A-Za-z0-9._:-]');

export const isJobId = (s: unknown): s is string => JobIdSchema.safeParse(s).success;
export const isOwner = (s: unknown): s is string => OwnerSchema.safeParse(s).success;

export const jobStreamName = (jobId: string) => `job-${jobId}`;
export const JOB_STREAM_PREFIX = 'job-';
