import { Controller, Delete, Get, Headers, HttpCode, Inject, Param, Post, Query, Res, UseGuards } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import type { JobView, WebhookDeliveryView } from '../../../libs/contracts/src';
import { NotFoundError, SPEC_LIMITS, ValidationError } from '../../../libs/contracts/src';
import { ArtifactStore } from '../../../libs/messaging/src/artifacts-store';
import { BundleStore } from '../../../libs/messaging/src/bundle-store';
import { API_CONTEXT, type ApiContext } from './api.context';
import type { Caller } from './api-tokens';
import { AuthGuard, CurrentCaller } from './http/auth.guard';
import { JsonBody } from './http/json-body';
import { CurrentRequestId } from './http/request-id';
import { SubmitBody, type SubmitBodyValue } from './http/submit-body';
import { JobsService, type JobEventItem } from './jobs.service';
import type { JobComparison } from './compare';
import { LogsService } from './logs/logs.service';
import { readBundleManifest } from './bundle-manifest';
import type { JobsPage } from './projections/jobs.projection';

/** REST edge of jobs: parse, call, map. Rules live in JobsService and LogsService. */
@Controller('v1/jobs')
@UseGuards(AuthGuard)
export class JobsController {
  constructor(
    @Inject(JobsService) private readonly jobs: JobsService,
    @Inject(LogsService) private readonly logs: LogsService,
    @Inject(API_CONTEXT) private readonly ctx: ApiContext,
  ) {}

  private bundles: Promise<BundleStore> | null = null;
  private artifacts: Promise<ArtifactStore> | null = null;

  /** 201 + Location for a new job; 200 when an Idempotency-Key named an existing one. */
  @Post()
  async submit(
    @CurrentCaller() caller: Caller,
    @Headers('idempotency-key') key: string | undefined,
    @SubmitBody() body: SubmitBodyValue,
    @CurrentRequestId() requestId: string,
    @Res({ passthrough: true }) res: ServerResponse,
  ): Promise<JobView> {
    const { created, job } = await this.jobs.submit(caller, body.spec, key, body.archive, requestId);
    res.statusCode = created ? 201 : 200;
    res.setHeader('Location', `/v1/jobs/${job.id}`);
    return job;
  }

  /** 201 + Location: the finished job runs again as a new job (same spec, same bundle by digest); 200 when an Idempotency-Key named that re-run already. */
  @Post(':id/rerun')
  async rerun(
    @CurrentCaller() caller: Caller,
    @Param('id') id: string,
    @Headers('idempotency-key') key: string | undefined,
    @CurrentRequestId() requestId: string,
    @Res({ passthrough: true }) res: ServerResponse,
  ): Promise<JobView> {
    const { created, job } = await this.jobs.rerun(caller, id, key, requestId);
    res.statusCode = created ? 201 : 200;
    res.setHeader('Location', `/v1/jobs/${job.id}`);
    return job;
  }

  @Get(':id/compare/:other')
  compare(@CurrentCaller() caller: Caller, @Param('id') id: string, @Param('other') other: string): Promise<JobComparison> {
    return this.jobs.compare(caller, id, other);
  }

  @Get()
  list(@CurrentCaller() caller: Caller, @Query() query: unknown): Promise<JobsPage> {
    return this.jobs.list(caller, query);
  }

  @Get(':id')
  get(@CurrentCaller() caller: Caller, @Param('id') id: string, @Query() query: unknown): Promise<JobView> {
    return this.jobs.get(caller, id, query);
  }

  @Post(':id/cancel')
  @HttpCode(202)
  cancel(@CurrentCaller() caller: Caller, @Param('id') id: string, @JsonBody() body: unknown, @CurrentRequestId() requestId: string) {
    return this.jobs.cancel(caller, id, body, requestId);
  }

  /** 204 once JobPurged is recorded (logs and artifacts deleted); 409 while the job runs. */
  @Delete(':id')
  @HttpCode(204)
  async purge(@CurrentCaller() caller: Caller, @Param('id') id: string, @CurrentRequestId() requestId: string): Promise<void> {
    await this.jobs.purge(caller, id, requestId);
  }

  @Get(':id/events')
  events(@CurrentCaller() caller: Caller, @Param('id') id: string): Promise<{ items: JobEventItem[] }> {
    return this.jobs.events(caller, id);
  }

  @Get(':id/webhooks')
  webhooks(@CurrentCaller() caller: Caller, @Param('id') id: string): Promise<{ items: WebhookDeliveryView[] }> {
    return this.jobs.webhooks(caller, id);
  }

  @Get(':id/logs')
  logsOf(@CurrentCaller() caller: Caller, @Param('id') id: string, @Query() query: unknown, @Res() res: ServerResponse): Promise<void> {
    return this.logs.send(caller, id, query, res);
  }

  /** The job's bundle (application/gzip); 404 when the job has none (yet). */
  @Get(':id/bundle')
  async bundle(@CurrentCaller() caller: Caller, @Param('id') id: string, @Res() res: ServerResponse): Promise<void> {
    const job = await this.jobs.get(caller, id, {});
    const bytes = await this.bundleBytes(caller, id);
    res.writeHead(200, {
      'content-type': 'application/gzip',
      'content-length': String(bytes.length),
      'content-disposition': `attachment; filename="${id}.tar.gz"`,
      etag: `"${job.bundleDigest}"`,
    });
    res.end(bytes);
  }

  private async bundleBytes(caller: Caller, id: string): Promise<Uint8Array> {
    const job = this.jobs.visible(caller, id);
    if (!job.bundleDigest) throw new NotFoundError(`job ${id} has no bundle`);
    // Bundles are shared by digest, so a purge leaves the bytes; the purged job no longer serves them.
    if (job.purged) throw new NotFoundError(`job ${id} was purged`);
    this.bundles ??= BundleStore.open(this.ctx.nc);
    const bytes = await (await this.bundles).get(job.bundleDigest);
    if (!bytes) throw new NotFoundError(`the bundle of job ${id} is no longer stored`);
    return bytes;
  }

  /** The bundle's `.jobline/manifest.json` (every file with mode, size, sha256; source and data); 404 without a bundle. */
  @Get(':id/bundle/manifest')
  async bundleManifest(@CurrentCaller() caller: Caller, @Param('id') id: string): Promise<unknown> {
    const bytes = await this.bundleBytes(caller, id);
    const manifest = await readBundleManifest(bytes);
    if (manifest === null) throw new NotFoundError(`the bundle of job ${id} has no manifest`);
    return manifest;
  }

  /** The `outputs` of the job's latest attempt (application/gzip); 404 when it stored none. */
  @Get(':id/artifacts')
  async artifactsOf(@CurrentCaller() caller: Caller, @Param('id') id: string, @Query('step') stepParam: unknown, @Res() res: ServerResponse): Promise<void> {
    const step = stepParam === undefined ? undefined : stepNumber(stepParam);
    const job = await this.jobs.get(caller, id, {});
    if (!job.attempt) throw new NotFoundError(`job ${id} has not run, so it has no artifacts`);
    // Purged (by hand or by the retention policy, which records JobPurged before it deletes): nothing is served.
    if (job.purged) throw new NotFoundError(`job ${id} was purged`);
    if (step !== undefined && step > (job.spec.steps?.length ?? 0)) throw new NotFoundError(`job ${id} has no step ${step}`);
    this.artifacts ??= ArtifactStore.open(this.ctx.nc);
    const bytes = await (await this.artifacts).get(job.id, job.attempt, step);
    if (!bytes) throw new NotFoundError(step === undefined ? `job ${id} has no artifacts for attempt ${job.attempt}` : `step ${step} of job ${id} has no artifacts for attempt ${job.attempt}`);
    res.writeHead(200, {
      'content-type': 'application/gzip',
      'content-length': String(bytes.length),
      'content-disposition': `attachment; filename="${id}-artifacts-${job.attempt}${step === undefined ? '' : `-step-${step}`}.tar.gz"`,
    });
    res.end(bytes);
  }
}

/** `?step=N`: a step number, 1 to the most steps a spec may hold. */
function stepNumber(v: unknown): number {
  const n = typeof v === 'string' && /^[1-9][0-9]{0,3}$/.test(v) ? Number(v) : NaN;
  if (!(n <= SPEC_LIMITS.steps)) throw new ValidationError('invalid query', [{ path: 'step', message: `must be a step number from 1 to ${SPEC_LIMITS.steps}` }]);
  return n;
}
