import * as grpc from '@grpc/grpc-js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { CLIENT_CHANNEL_OPTIONS, jobServiceClient } from '../../../api/src/grpc/jobs.proto-loader';
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

/** A failed call, with what the CLI needs to say what to do next. */
export class RemoteCallError extends Error {
  constructor(
    readonly code: grpc.status,
    readonly details: string,
    readonly address: string,
    readonly method: string,
  ) {
    super(details);
    this.name = 'RemoteCallError';
  }
}

export interface JobsRemoteOptions {
  /** Deadline of a unary call (default 30 s): a server that accepts the connection but never answers must not hang the CLI. */
  callTimeoutMs?: number;
}

/** A JobService client with promise-returning calls. */
export class JobsRemote {
  private readonly client: grpc.Client & Record<string, any>;
  readonly address: string;
  private readonly callTimeoutMs: number;

  constructor(config: RemoteConfig, options: JobsRemoteOptions = {}) {
    this.address = config.address;
    this.callTimeoutMs = options.callTimeoutMs ?? 30_000;
    const read = (what: 'CA' | 'cert' | 'key', p: string) => {
      const flag = what === 'CA' ? 'ca' : what;
      const env = what === 'CA' ? 'JOBLINE_CA' : what === 'cert' ? 'JOBLINE_CERT' : 'JOBLINE_KEY';
      if (!existsSync(p)) throw new Error(`${what} file ${p} not found: run \`jobline certs init\` (development certificates), or pass --${flag} or set ${env}`);
      return readFileSync(p);
    };
    const Client = jobServiceClient();
    this.client = new Client(config.address, grpc.credentials.createSsl(read('CA', config.ca), read('key', config.key), read('cert', config.cert)), {
      ...CLIENT_CHANNEL_OPTIONS,
      // The dev server certificate names localhost; connecting to 127.0.0.1 must still verify against it.
      ...(/^(127\.|\[::1\])/.test(config.address) ? { 'grpc.ssl_target_name_override': 'localhost' } : {}),
    }) as any;
  }

  private wrap(method: string, err: grpc.ServiceError | Error): Error {
    const e = err as Partial<grpc.ServiceError>;
    return e.code !== undefined ? new RemoteCallError(e.code, e.details || err.message, this.address, method) : err;
  }

  call(method: string, req: unknown): Promise<any> {
    return new Promise((resolve, reject) =>
      (this.client[method] as (r: unknown, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, res: any) => void) => void).call(
        this.client,
        req,
        { deadline: Date.now() + this.callTimeoutMs },
        (err, res) => (err ? reject(this.wrap(method, err)) : resolve(res)),
      ),
    );
  }

  /** Calls `onItem` with every message of a server stream, in order, until it ends. */
  stream(method: string, req: unknown, onItem: (m: any) => void | Promise<void>): Promise<void> {
    const call = this.client[method](req) as grpc.ClientReadableStream<any>;
    return new Promise((resolve, reject) => {
      let chain = Promise.resolve();
      const fail = (err: Error) => {
        call.cancel();
        reject(this.wrap(method, err));
      };
      call.on('data', (m) => {
        call.pause();
        chain = chain.then(() => onItem(m)).then(() => void call.resume(), fail);
      });
      call.on('error', fail);
      call.on('end', () => void chain.then(resolve, fail));
    });
  }

  /** Status changes (Watch) until the returned function is called; errors end it quietly (it is only progress). */
  watch(req: unknown, onChange: (m: any) => void): () => void {
    const call = this.client.Watch(req) as grpc.ClientReadableStream<any>;
    let open = true;
    call.on('data', (m) => {
      if (open) onChange(m);
    });
    call.on('error', () => undefined);
    return () => {
      if (!open) return;
      open = false;
      call.cancel();
    };
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

/** What grpc-js says when no connection could be made or kept (as opposed to the server answering UNAVAILABLE). */
const CONNECTION_FAILURE = /No connection established|Failed to connect|Connection dropped|ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|Name resolution failed|DNS resolution failed/i;
const ADDRESS_HINT = 'set --address or JOBLINE_GRPC_ADDRESS';
const CREDENTIALS_HINT = 'check --ca/--cert/--key (JOBLINE_CA, JOBLINE_CERT, JOBLINE_KEY), or run `jobline certs init` for development certificates';

/**
 * A failed call as one line that says what went wrong and what to do next, instead of
 * grpc-js's own text ("14 UNAVAILABLE: No connection established. Last error: …").
 */
export function describeError(err: unknown): string {
  if (!(err instanceof RemoteCallError)) {
    const e = err as Partial<grpc.ServiceError> & Error;
    return e.code !== undefined ? `${grpc.status[e.code]}: ${e.details || e.message}` : e.message;
  }
  const { code, details, address } = err;
  switch (code) {
    case grpc.status.UNAVAILABLE:
    case grpc.status.DEADLINE_EXCEEDED: {
      if (/certificate|ssl|tls|handshake|alert/i.test(details)) return `the TLS handshake with the Jobline gRPC server at ${address} failed (${lastError(details)}): ${CREDENTIALS_HINT}`;
      if (code === grpc.status.DEADLINE_EXCEEDED) return `the Jobline gRPC server at ${address} did not answer in time: is it overloaded, or is ${address} another service? ${ADDRESS_HINT}`;
      // The server's own UNAVAILABLE (its bus is down...) is Jobline's text: pass it on as it is.
      if (!CONNECTION_FAILURE.test(details)) return `the Jobline server at ${address} is unavailable: ${details}; try again shortly`;
      return `cannot reach the Jobline gRPC server at ${address}: is \`jobline api\` (or \`jobline dev\`) running? ${ADDRESS_HINT} (${lastError(details)})`;
    }
    case grpc.status.NOT_FOUND:
      return `${details}: \`jobline list\` shows the jobs you can see (another owner's job is not found either)`;
    case grpc.status.INVALID_ARGUMENT:
      return `refused, nothing was changed: ${details} (\`jobline ${err.method.toLowerCase()} --help\` for usage)`;
    case grpc.status.FAILED_PRECONDITION:
      return `not possible now: ${details}`;
    case grpc.status.PERMISSION_DENIED:
      return `permission denied: ${details}; an admin certificate (\`jobline certs issue NAME --admin\`) may do this`;
    case grpc.status.UNAUTHENTICATED:
      return `not authenticated: ${details}; ${CREDENTIALS_HINT}`;
    default:
      return `the server failed (${grpc.status[code] ?? code}): ${details}`;
  }
}

/** grpc-js's "No connection established. Last error: X (time)" → X. */
const lastError = (details: string) => /Last error: (.*?)(?: \(\d{4}-.*\))?$/.exec(details)?.[1] ?? details;
