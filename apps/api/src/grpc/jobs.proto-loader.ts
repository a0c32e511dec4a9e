import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** proto/jobline/v1/jobs.proto, found from the sources (ts-node, jest) or the build (dist/). */
export function jobsProtoPath(): string {
  // Walks up from this file: the repository root holds proto/ whether this runs from apps/ or dist/apps/.
  for (let dir = __dirname, i = 0; i < 8; i++, dir = dirname(dir)) {
    const p = join(dir, 'proto/jobline/v1/jobs.proto');
    if (existsSync(p)) return p;
  }
  throw new Error('proto/jobline/v1/jobs.proto not found next to the sources or the build');
}

/**
 * How messages look in JavaScript: camelCase fields, enums as their names, 64-bit
 * integers as numbers (offsets and positions stay below 2^53), oneofs named by a virtual
 * field, and unset fields absent.
 */
export const LOADER_OPTIONS: protoLoader.Options = { keepCase: false, longs: Number, enums: String, defaults: false, oneofs: true };

/**
 * Channel options for our own clients (the CLI, tests, benchmarks). A Logs stream moves as
 * fast as the client's HTTP/2 receive window allows: grpc-js advertises 64 KiB by default
 * and does no window tuning, so the server could have only 64 KiB on its way at a time and a
 * followed log ran at 64 KiB per round trip (about 35 MB/s on a loaded machine). 8 MiB
 * lets it run at what the two ends can do; the client holds at most that much unread.
 */
export const CLIENT_CHANNEL_OPTIONS: grpc.ChannelOptions = { 'grpc-node.flow_control_window': 8 << 20 };

let cached: grpc.ServiceClientConstructor | null = null;

/** The generated client constructor of jobline.v1.JobService (its `.service` is the server definition). */
export function jobServiceClient(): grpc.ServiceClientConstructor {
  if (cached) return cached;
  const def = protoLoader.loadSync(jobsProtoPath(), LOADER_OPTIONS);
  const pkg = grpc.loadPackageDefinition(def) as unknown as { jobline: { v1: { JobService: grpc.ServiceClientConstructor } } };
  cached = pkg.jobline.v1.JobService;
  return cached;
}
