import { z } from 'zod';
import type { WsErrorCode } from './errors';
import type { JobStatus, StepView } from './job-view';
import type { LogStream } from './subjects';

/**
 * The WebSocket contract of /v1/ws (DESIGN.md, fixed): JSON text frames both ways. Fields
 * may be added, never removed or retyped.
 */

const JobIdField = z.string().min(1).max(200);

export const WsClientFrameSchema = z.discriminatedUnion('op', [
  z.object({
    op: z.literal('follow'),
    jobId: JobIdField,
    /** Byte offset within `attempt` (default 0). */
    from: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
    /** Attempt to start in (default 1); later attempts follow from their start. */
    attempt: z.number().int().min(1).max(1_000_000).optional(),
  }),
  z.object({ op: z.literal('unfollow'), jobId: JobIdField }),
  z.object({ op: z.literal('watch') }),
]);

/** `{op: "follow", jobId, from?, attempt?}` · `{op: "unfollow", jobId}` · `{op: "watch"}`. */
export type WsClientFrame = z.output<typeof WsClientFrameSchema>;
export type WsClientOp = WsClientFrame['op'];
export const WS_CLIENT_OPS: readonly WsClientOp[] = ['follow', 'unfollow', 'watch'];

/** A slice of a followed job's output. */
export interface WsLogFrame {
  type: 'log';
  jobId: string;
  attempt: number;
  stream: LogStream;
  /** Offset of the first byte in the attempt's output, stdout and stderr counted together. */
  offset: number;
  /** UTF-8 text, or base64 when `encoding` says so (the bytes were not valid UTF-8). */
  data: string;
  encoding?: 'base64';
}

/** A change of one of the watched jobs. */
export interface WsStatusFrame {
  type: 'status';
  jobId: string;
  owner: string;
  status: JobStatus;
  /** When the event that changed it happened. */
  at: string;
  attempt: number;
  /** That event's type and store position. */
  event: string;
  position: number;
  exitCode?: number;
  signal?: string;
  reason?: string;
  /** A staged job's steps after the change (event JobStepStarted / JobStepFinished: a step changed). */
  steps?: StepView[];
}

/** The followed job is over and every byte of its log was sent; the follow is closed. */
export interface WsEndFrame {
  type: 'end';
  jobId: string;
  status: JobStatus;
  exitCode: number | null;
  /** The job's last attempt (an addition to the fixed fields). */
  attempt?: number;
}

export interface WsErrorFrame {
  type: 'error';
  code: WsErrorCode;
  message: string;
  /** The job the error is about, when it is about one. */
  jobId?: string;
}

export type WsServerFrame = WsLogFrame | WsStatusFrame | WsEndFrame | WsErrorFrame;
