import { Controller, Get, Inject, Param, Req, Res } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { NotFoundError } from '../../../../libs/contracts/src';
import { openApiJson } from '../openapi/openapi.document';
import { type DashboardAsset, type DashboardAssets } from './dashboard-assets';

export const DASHBOARD_ASSETS = Symbol('DashboardAssets');

/**
 * Everything the page may load or connect to comes from this origin: scripts and styles
 * are files (no inline code), fetch and the WebSocket go to the api itself, nothing may
 * frame it. `'self'` in connect-src covers ws:// and wss:// to the same host (CSP 3).
 */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Paths the dashboard's router answers in the browser; each gets index.html, so a reload or a shared link works. */
export const DASHBOARD_ROUTES = ['/', '/jobs', '/jobs/:id', '/submit', '/executors', '/reference', '/sign-in'];

/**
 * Serves the built dashboard (no authentication: the page signs in itself, and holds no
 * data) and the OpenAPI document. Hashed files under /assets/ are cached for a year;
 * everything else is revalidated by ETag on every load, so a new build shows at once.
 */
@Controller()
export class DashboardController {
  private readonly openapi = Buffer.from(openApiJson());

  constructor(@Inject(DASHBOARD_ASSETS) private readonly assets: DashboardAssets | null) {}

  @Get(DASHBOARD_ROUTES)
  page(@Req() req: IncomingMessage, @Res() res: ServerResponse): void {
    if (!this.assets) throw new NotFoundError('the dashboard is not built here: run `npm run build` (it writes dist/web), then restart the api');
    send(req, res, this.assets.index);
  }

  @Get('assets/*path')
  asset(@Param('path') path: string[] | string, @Req() req: IncomingMessage, @Res() res: ServerResponse): void {
    const rel = Array.isArray(path) ? path.join('/') : path;
    const asset = this.assets?.get(`/assets/${rel}`);
    if (!asset) throw new NotFoundError(`no dashboard asset /assets/${rel}`);
    send(req, res, asset);
  }

  /** The OpenAPI 3.1 document (the same as docs/openapi.json). */
  @Get('openapi.json')
  openApi(@Res() res: ServerResponse): void {
    res.statusCode = 200;
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Content-Length', this.openapi.length);
    res.end(this.openapi);
  }
}

function send(req: IncomingMessage, res: ServerResponse, asset: DashboardAsset): void {
  res.setHeader('Content-Security-Policy', DASHBOARD_CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  res.setHeader('Cache-Control', asset.immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
  res.setHeader('ETag', asset.etag);
  res.setHeader('Vary', 'Accept-Encoding');
  res.setHeader('Content-Type', asset.contentType);
  if (etagMatches(req.headers['if-none-match'], asset.etag)) {
    res.statusCode = 304;
    res.end();
    return;
  }
  const gzip = asset.gzip && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
  const body = gzip ? asset.gzip! : asset.body;
  if (gzip) res.setHeader('Content-Encoding', 'gzip');
  res.statusCode = 200;
  res.setHeader('Content-Length', body.length);
  res.end(req.method === 'HEAD' ? undefined : body);
}

function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(',').some((t) => {
    const v = t.trim();
    return v === '*' || v === etag || v === `W/${etag}`;
  });
}
