import type { INestApplicationContext } from '@nestjs/common';
import { WsAdapter } from '@nestjs/platform-ws';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { JoblineError, NotFoundError, WS_CLIENT_OPS, WsClientFrameSchema, type WsClientOp } from '../../../../libs/contracts/src';
import type { Caller, TokenRegistry } from '../api-tokens';
import { toProblem } from '../http/problem.filter';
import { callerFromRequest } from '../http/request-caller';

/** The caller of each upgraded request, set before the upgrade and read by the gateway's handleConnection. */
const callers = new WeakMap<IncomingMessage, Caller>();
export const callerOfUpgrade = (req: IncomingMessage): Caller | undefined => callers.get(req);

/** What the gateway's handlers get: a valid client frame, or why a frame was refused. */
export type ParsedClientFrame = { event: WsClientOp; data: unknown } | { event: 'invalid'; data: { message: string } };

/**
 * The ws platform adapter of @nestjs/platform-ws, with two things of ours:
 * - the upgrade is authenticated before it happens, by the same rules as REST (a verified
 *   client certificate, or a bearer token in the Authorization header or `?token=`); a
 *   refusal is an HTTP 401 with the same problem+json body as REST, and no WebSocket
 *   exists for it; an unknown path is a 404 problem;
 * - client frames are parsed against the contract (WsClientFrameSchema); anything else is
 *   handed to the gateway as an `invalid` event, so a bad frame gets an error frame.
 */
export class JoblineWsAdapter extends WsAdapter {
  constructor(
    app: INestApplicationContext,
    private readonly tokens: TokenRegistry,
  ) {
    super(app, { messageParser: parseClientFrame });
  }

  protected override ensureHttpServerExists(port: number, httpServer?: Server): Server | undefined {
    if (this.httpServersRegistry.has(port)) return undefined;
    if (!httpServer) throw new Error('the WebSocket gateway shares the api server: its port must be 0 in @WebSocketGateway');
    this.httpServersRegistry.set(port, httpServer);
    httpServer.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.upgrade(port, req, socket, head));
    return httpServer;
  }

  private upgrade(port: number, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch {
      return refuse(socket, new JoblineError('invalid_argument', 'unreadable request target'));
    }
    type PathServer = { path: string; handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, cb: (ws: unknown) => void): void; emit(e: string, ...a: unknown[]): void };
    const server = (this.wsServersRegistry.get(port) as PathServer[] | undefined)?.find((s) => s.path === url.pathname);
    if (!server) return refuse(socket, new NotFoundError(`no WebSocket endpoint at ${url.pathname}`));
    let caller: Caller;
    try {
      caller = callerFromRequest(req, this.tokens, url.searchParams.get('token'));
    } catch (err) {
      return refuse(socket, err);
    }
    callers.set(req, caller);
    server.handleUpgrade(req, socket, head, (ws) => server.emit('connection', ws, req));
  }
}

/** Answers an upgrade request with the REST problem document of the error, and closes. */
function refuse(socket: Duplex, err: unknown): void {
  const problem = toProblem(err);
  const body = JSON.stringify(problem);
  const lines = [
    `HTTP/1.1 ${problem.status} ${problem.title}`,
    'Content-Type: application/problem+json',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Cache-Control: no-store',
    ...(problem.status === 401 ? ['WWW-Authenticate: Bearer realm="jobline"'] : []),
    'Connection: close',
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
}

/** A text frame's JSON against the contract; never throws (the adapter would drop the frame silently). */
export function parseClientFrame(data: string | Buffer | ArrayBuffer | Buffer[]): ParsedClientFrame {
  const invalid = (message: string): ParsedClientFrame => ({ event: 'invalid', data: { message } });
  if (typeof data !== 'string') return invalid('frames are JSON text, not binary');
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    return invalid('the frame is not valid JSON');
  }
  const parsed = WsClientFrameSchema.safeParse(json);
  if (parsed.success) return { event: parsed.data.op, data: parsed.data };
  const op = (json as { op?: unknown } | null)?.op;
  if (typeof op === 'string' && (WS_CLIENT_OPS as readonly string[]).includes(op)) {
    return invalid(`invalid ${op} frame: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(frame)'}: ${i.message}`).join('; ')}`);
  }
  return invalid(`unknown op ${JSON.stringify(op ?? null)}: expected ${WS_CLIENT_OPS.map((o) => `"${o}"`).join(', ')}`);
}
