/**
 * One WebSocket to /v1/ws for the whole page: `watch` for status changes, `follow` for
 * logs. The token rides in Sec-WebSocket-Protocol (`jobline.bearer.<base64url>`), never
 * in the URL. A dropped connection is re-opened with back-off; follows resume from the
 * byte after the last frame each one saw, so nothing is shown twice or lost.
 */

import { tokenStore } from './api';
import type { LogFrame } from './lib/log-buffer';

export interface StatusFrame {
  type: 'status';
  jobId: string;
  owner: string;
  status: string;
  at: string;
  attempt: number;
  event: string;
  exitCode?: number;
  signal?: string;
  reason?: string;
}
export type LogFrameMsg = LogFrame & { type: 'log'; jobId: string };
export interface EndFrame {
  type: 'end';
  jobId: string;
  status: string;
  exitCode: number | null;
}
export interface ErrorFrame {
  type: 'error';
  code: string;
  message: string;
  jobId?: string;
}
type Frame = StatusFrame | LogFrameMsg | EndFrame | ErrorFrame;

export interface FollowHandlers {
  /** Where to resume: asked at every (re)connect. */
  position(): { attempt: number; from: number };
  onLog(frame: LogFrameMsg): void;
  onEnd(frame: EndFrame): void;
  onError(frame: ErrorFrame): void;
}

export type ConnectionState = 'connecting' | 'open' | 'closed';

function base64url(s: string): string {
  const bytes = new TextEncoder().encode(s);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

class LiveConnection {
  private ws: WebSocket | null = null;
  private readonly watchers = new Set<(f: StatusFrame) => void>();
  private readonly follows = new Map<string, FollowHandlers>();
  private readonly stateListeners = new Set<(s: ConnectionState) => void>();
  private retryMs = 500;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private stopped = true;
  state: ConnectionState = 'closed';

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.open();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.ws?.close();
    this.ws = null;
    this.setState('closed');
  }

  onState(l: (s: ConnectionState) => void): () => void {
    this.stateListeners.add(l);
    l(this.state);
    return () => void this.stateListeners.delete(l);
  }

  watch(l: (f: StatusFrame) => void): () => void {
    this.watchers.add(l);
    if (this.watchers.size === 1) this.send({ op: 'watch' });
    return () => void this.watchers.delete(l);
  }

  follow(jobId: string, h: FollowHandlers): () => void {
    this.follows.set(jobId, h);
    this.sendFollow(jobId, h);
    return () => {
      if (this.follows.get(jobId) !== h) return;
      this.follows.delete(jobId);
      this.send({ op: 'unfollow', jobId });
    };
  }

  private sendFollow(jobId: string, h: FollowHandlers): void {
    const p = h.position();
    this.send({ op: 'follow', jobId, attempt: p.attempt, from: p.from });
  }

  private send(frame: object): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  private setState(s: ConnectionState): void {
    this.state = s;
    for (const l of this.stateListeners) l(s);
  }

  private open(): void {
    const token = tokenStore.get();
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`;
    const ws = new WebSocket(url, token ? ['jobline.v1', `jobline.bearer.${base64url(token)}`] : []);
    this.ws = ws;
    this.setState('connecting');
    ws.onopen = () => {
      this.retryMs = 500;
      this.setState('open');
      // Status changes missed while away are caught up by each view refetching on 'open'.
      if (this.watchers.size) this.send({ op: 'watch' });
      for (const [jobId, h] of this.follows) this.sendFollow(jobId, h);
    };
    ws.onmessage = (e) => this.dispatch(JSON.parse(String(e.data)) as Frame);
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.setState('closed');
      if (this.stopped) return;
      this.timer = setTimeout(() => this.open(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 10_000);
    };
  }

  private dispatch(f: Frame): void {
    switch (f.type) {
      case 'status':
        for (const w of this.watchers) w(f);
        return;
      case 'log':
        this.follows.get(f.jobId)?.onLog(f);
        return;
      case 'end': {
        const h = this.follows.get(f.jobId);
        this.follows.delete(f.jobId);
        h?.onEnd(f);
        return;
      }
      case 'error':
        if (f.jobId) this.follows.get(f.jobId)?.onError(f);
        return;
    }
  }
}

export const live = new LiveConnection();
