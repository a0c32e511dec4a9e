import * as grpc from '@grpc/grpc-js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { jobServiceClient } from '../../../api/src/grpc/jobs.proto-loader';
import { certPaths, certsDir } from '../certs/dev-pki';

/** Where the CLI finds the gRPC server and its credentials. */
export interface RemoteConfig {
  /** host:port of the api's gRPC server. */
  address: string;
  /** PEM file paths. */
  ca: string;
  cert: string;
  key: string;
}

const RemoteConfigSchema = z.strictObject({
  address: z.string().regex(/^[^\s]+:\d{1,5}$/, 'expected host:port').optional(),
  ca: z.string().min(1).optional(),
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
});
type PartialConfig = z.infer<typeof RemoteConfigSchema>;

/**
 * Resolves the connection settings, first found wins: flags, then environment
 * (JOBLINE_GRPC_ADDRESS, JOBLINE_CA, JOBLINE_CERT, JOBLINE_KEY), then the config file
 * (JSON with the same four keys), then the `jobline dev` defaults: 127.0.0.1:50051 and the
 * admin certificate of <data-dir>/certs.
 */
export function resolveRemoteConfig(flags: PartialConfig, env: PartialConfig, configFile: string | undefined, dataDir: string): RemoteConfig {
  let file: PartialConfig = {};
  if (configFile && existsSync(configFile)) {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(configFile, 'utf8'));
    } catch (err) {
      throw new Error(`${configFile} is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
    const parsed = RemoteConfigSchema.safeParse(json);
    if (!parsed.success) throw new Error(`${configFile}: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(file)'}: ${i.message}`).join('; ')}`);
    file = parsed.data;
  }
  for (const [where, c] of [['flags', flags], ['environment', env]] as const) {
    const parsed = RemoteConfigSchema.safeParse(Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined)));
    if (!parsed.success) throw new Error(`invalid ${where}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  const dev = certsDir(dataDir);
  const admin = certPaths(dev, 'admin');
  const pick = (k: keyof PartialConfig, fallback: string) => flags[k] ?? env[k] ?? file[k] ?? fallback;
  return { address: pick('address', '127.0.0.1:50051'), ca: pick('ca', join(dev, 'ca.crt')), cert: pick('cert', admin.cert), key: pick('key', admin.key) };
}

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader messages are untyped */

/** A JobService client with promise-returning calls. */
export class JobsRemote {
  private readonly client: grpc.Client & Record<string, any>;

  constructor(config: RemoteConfig) {
    const read = (what: string, p: string) => {
      if (!existsSync(p)) throw new Error(`${what} ${p} not found (run \`jobline certs init\`, or pass --${what === 'CA' ? 'ca' : what})`);
      return readFileSync(p);
    };
    const Client = jobServiceClient();
    this.client = new Client(config.address, grpc.credentials.createSsl(read('CA', config.ca), read('key', config.key), read('cert', config.cert)), {
      // The dev server certificate names localhost; connecting to 127.0.0.1 must still verify against it.
      ...(/^(127\.|\[::1\])/.test(config.address) ? { 'grpc.ssl_target_name_override': 'localhost' } : {}),
    }) as any;
  }

  call(method: string, req: unknown): Promise<any> {
    return new Promise((resolve, reject) =>
      (this.client[method] as (r: unknown, cb: (e: grpc.ServiceError | null, res: any) => void) => void).call(this.client, req, (err, res) => (err ? reject(err) : resolve(res))),
    );
  }

  /** Calls `onItem` with every message of a server stream, in order, until it ends. */
  stream(method: string, req: unknown, onItem: (m: any) => void | Promise<void>): Promise<void> {
    const call = this.client[method](req) as grpc.ClientReadableStream<any>;
    return new Promise((resolve, reject) => {
      let chain = Promise.resolve();
      call.on('data', (m) => {
        call.pause();
        chain = chain.then(() => onItem(m)).then(() => void call.resume(), reject);
      });
      call.on('error', reject);
      call.on('end', () => void chain.then(resolve, reject));
    });
  }

  close(): void {
    this.client.close();
  }
}

/* eslint-enable @typescript-eslint/no-explicit-any */

/** Exit codes a script can rely on (`logs -f` exits with the job's own exit code instead). */
export const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3, failedPrecondition: 4, permission: 5, unavailable: 69 } as const;

export function exitCodeFor(err: unknown): number {
  const code = (err as Partial<grpc.ServiceError>).code;
  switch (code) {
    case grpc.status.INVALID_ARGUMENT:
      return EXIT.usage;
    case grpc.status.NOT_FOUND:
      return EXIT.notFound;
    case grpc.status.FAILED_PRECONDITION:
      return EXIT.failedPrecondition;
    case grpc.status.PERMISSION_DENIED:
    case grpc.status.UNAUTHENTICATED:
      return EXIT.permission;
    case grpc.status.UNAVAILABLE:
    case grpc.status.DEADLINE_EXCEEDED:
      return EXIT.unavailable;
    default:
      return EXIT.failure;
  }
}

/** A gRPC error as one readable line. */
export const describeError = (err: unknown): string => {
  const e = err as Partial<grpc.ServiceError> & Error;
  return e.code !== undefined ? `${grpc.status[e.code]}: ${e.details || e.message}` : e.message;
};
