import 'reflect-metadata';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { RequestMethod } from '@nestjs/common';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { JobSpecSchema } from '../../../../libs/contracts/src';
import { API_CONTROLLERS } from '../api.module';
import { ListQuerySchema } from '../jobs.service';
import { DASHBOARD_ROUTES } from '../web/dashboard.controller';
import { buildOpenApiDocument, openApiJson } from './openapi.document';

type Json = Record<string, unknown>;
const doc = buildOpenApiDocument() as { openapi: string; paths: Record<string, Record<string, Json>>; components: { schemas: Record<string, Json> } };
const HTTP_METHODS = ['get', 'post', 'put', 'patch', 'delete'];

/** Every route the controllers declare, as "GET /v1/jobs/{id}" (Nest's :id written the OpenAPI way). */
function controllerRoutes(): string[] {
  const out: string[] = [];
  for (const controller of API_CONTROLLERS) {
    const prefix = String(Reflect.getMetadata(PATH_METADATA, controller) ?? '');
    const proto = controller.prototype as unknown as Record<string, unknown>;
    for (const name of Object.getOwnPropertyNames(proto)) {
      const handler = proto[name];
      if (typeof handler !== 'function' || name === 'constructor') continue;
      const paths = Reflect.getMetadata(PATH_METADATA, handler) as string | string[] | undefined;
      const method = Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod | undefined;
      if (paths === undefined || method === undefined) continue;
      for (const p of Array.isArray(paths) ? paths : [paths]) {
        const full = ('/' + [prefix, p].map((s) => s.replace(/^\/+|\/+$/g, '')).filter(Boolean).join('/')).replace(/:(\w+)/g, '{$1}');
        out.push(`${RequestMethod[method]} ${full}`);
      }
    }
  }
  return out.sort();
}

describe('OpenAPI document', () => {
  it('is OpenAPI 3.1', () => {
    expect(doc.openapi).toBe('3.1.0');
  });

  it('documents every route of the api, and nothing else (the dashboard pages and assets aside)', () => {
    const dashboard = new Set([...DASHBOARD_ROUTES.map((r) => `GET ${r.replace(/:(\w+)/g, '{$1}')}`), 'GET /assets/*path']);
    const routes = controllerRoutes().filter((r) => !dashboard.has(r));
    const documented = Object.entries(doc.paths)
      .flatMap(([path, item]) => HTTP_METHODS.filter((m) => item[m]).map((m) => `${m.toUpperCase()} ${path}`))
      .sort();
    expect(routes.length).toBeGreaterThan(15);
    expect(documented).toEqual(routes);
  });

  it('takes X-Request-Id on every operation and echoes it on every response', () => {
    for (const item of Object.values(doc.paths)) {
      for (const m of HTTP_METHODS.filter((m) => item[m])) {
        const op = item[m] as { parameters: Json[]; responses: Record<string, { headers?: Json }> };
        expect(op.parameters).toContainEqual({ $ref: '#/components/parameters/RequestId' });
        for (const r of Object.values(op.responses)) expect(r.headers?.['X-Request-Id']).toEqual({ $ref: '#/components/headers/RequestId' });
      }
    }
  });

  it('resolves every $ref, and gives every operation a unique id and a success response', () => {
    const refs: string[] = [];
    const walk = (n: unknown) => {
      if (Array.isArray(n)) n.forEach(walk);
      else if (n && typeof n === 'object') {
        for (const [k, v] of Object.entries(n)) {
          if (k === '$ref' && typeof v === 'string') refs.push(v);
          else walk(v);
        }
      }
    };
    walk(doc);
    expect(refs.length).toBeGreaterThan(20);
    const resolves = (r: string) => {
      const [, components, kind, name, ...rest] = r.split('/');
      const group = (doc.components as Record<string, Json | undefined>)[kind];
      return components === 'components' && rest.length === 0 && group !== undefined && name in group;
    };
    for (const r of refs) expect({ r, ok: resolves(r) }).toEqual({ r, ok: true });
    const ids = Object.values(doc.paths).flatMap((item) => HTTP_METHODS.filter((m) => item[m]).map((m) => item[m] as Json));
    expect(new Set(ids.map((o) => o.operationId)).size).toBe(ids.length);
    for (const op of ids) expect(Object.keys(op.responses as Json).some((c) => /^2\d\d$/.test(c))).toBe(true);
  });

  it('takes the query parameters from the schemas the api validates with', () => {
    const params = (doc.paths['/v1/jobs'].get.parameters as Json[]).map((p) => p.name);
    expect(params).toEqual(Object.keys(ListQuerySchema.shape));
    const limit = (doc.paths['/v1/jobs'].get.parameters as Json[]).find((p) => p.name === 'limit')!;
    expect(limit.schema).toEqual({ type: 'integer', minimum: 1, maximum: 100 });
    const status = (doc.paths['/v1/jobs'].get.parameters as Json[]).find((p) => p.name === 'status')!;
    expect(status).toMatchObject({ style: 'form', explode: false, schema: { type: 'array', items: { enum: ['pending', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out'] } } });
  });

  it('describes the submitted spec as zod input and the stored one as output', () => {
    const input = doc.components.schemas.JobSpec;
    const stored = doc.components.schemas.StoredJobSpec;
    expect(input.required ?? []).not.toContain('priority');
    expect(stored.required).toContain('priority');
    expect(input.oneOf).toEqual([{ required: ['command'] }, { required: ['steps'] }]);
    expect(Object.keys(input.properties as Json).sort()).toEqual(Object.keys(JobSpecSchema.shape).sort());
    expect((doc.components.schemas.JobView.properties as Json).spec).toEqual({ $ref: '#/components/schemas/StoredJobSpec' });
  });

  it('is what docs/openapi.json holds (regenerate: npm run build && node dist/apps/api/src/openapi/write-openapi.js)', () => {
    const onDisk = readFileSync(join(__dirname, '../../../../docs/openapi.json'), 'utf8');
    expect(onDisk === openApiJson()).toBe(true);
  });
});
