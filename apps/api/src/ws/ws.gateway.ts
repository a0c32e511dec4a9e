import { Inject } from '@nestjs/common';
import { ConnectedSocket, MessageBody, SubscribeMessage, WebSocketGateway, type OnGatewayConnection, type OnGatewayDisconnect } from '@nestjs/websockets';
import type { IncomingMessage } from 'node:http';
import type { WebSocket } from 'ws';
import type { WsClientFrame } from '../../../../libs/contracts/src';
import { API_CONTEXT, type ApiContext } from '../api.context';
import { JobsService } from '../jobs.service';
import { callerOfUpgrade } from './ws.adapter';
import { WsSession, type WsGatewayOptions } from './ws-session';

export const WS_PATH = '/v1/ws';
export const WS_GATEWAY_OPTIONS = Symbol('WsGatewayOptions');
export { type WsGatewayOptions, WS_GATEWAY_DEFAULTS } from './ws-session';

type Follow = Extract<WsClientFrame, { op: 'follow' }>;
type Unfollow = Extract<WsClientFrame, { op: 'unfollow' }>;

/**
 * /v1/ws (DESIGN.md, fixed frames): follow a job's log, unfollow, watch status. The
 * upgrade was authenticated by JoblineWsAdapter before this gateway sees the socket; each
 * handler hands a frame validated against the contract to the connection's WsSession.
 */
@WebSocketGateway(0, { path: WS_PATH, maxPayload: 64 * 1024, perMessageDeflate: false })
export class WsGateway implements OnGatewayConnection, OnGatewayDisconnect {
  private readonly sessions = new WeakMap<WebSocket, WsSession>();

  constructor(
    @Inject(API_CONTEXT) private readonly ctx: ApiContext,
    @Inject(JobsService) private readonly jobs: JobsService,
    @Inject(WS_GATEWAY_OPTIONS) private readonly opts: Required<WsGatewayOptions>,
  ) {}

  handleConnection(ws: WebSocket, req: IncomingMessage): void {
    const caller = callerOfUpgrade(req);
    // Only the adapter's authenticated upgrades reach here; anything else is closed at once.
    if (!caller) return void ws.close(1008, 'not authenticated');
    this.sessions.set(ws, new WsSession(ws, caller, this.ctx, this.jobs, this.opts));
  }

  handleDisconnect(ws: WebSocket): void {
    this.sessions.get(ws)?.dispose();
    this.sessions.delete(ws);
  }

  @SubscribeMessage('follow')
  follow(@ConnectedSocket() ws: WebSocket, @MessageBody() f: Follow): void {
    this.sessions.get(ws)?.follow(f.jobId, f.attempt ?? 1, f.from ?? 0);
  }

  @SubscribeMessage('unfollow')
  unfollow(@ConnectedSocket() ws: WebSocket, @MessageBody() f: Unfollow): void {
    this.sessions.get(ws)?.unfollow(f.jobId);
  }

  @SubscribeMessage('watch')
  watch(@ConnectedSocket() ws: WebSocket): void {
    this.sessions.get(ws)?.watch();
  }

  @SubscribeMessage('invalid')
  invalid(@ConnectedSocket() ws: WebSocket, @MessageBody() f: { message: string }): void {
    this.sessions.get(ws)?.invalid(f.message);
  }
}
