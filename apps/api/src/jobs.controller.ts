import { Controller, Get, Headers, HttpCode, Inject, Param, Post, Query, Res, UseGuards } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import type { JobView } from '../../../libs/contracts/src';
import type { Caller } from './api-tokens';
import { AuthGuard, CurrentCaller } from './http/auth.guard';
import { JsonBody } from './http/json-body';
import { JobsService, type JobEventItem } from './jobs.service';
import { LogsService } from './logs/logs.service';
import type { JobsPage } from './projections/jobs.projection';

/** REST edge of jobs: parse, call, map. Rules live in JobsService and LogsService. */
@Controller('v1/jobs')
@UseGuards(AuthGuard)
export class JobsController {
  constructor(
    @Inject(JobsService) private readonly jobs: JobsService,
    @Inject(LogsService) private readonly logs: LogsService,
  ) {}

  /** 201 + Location for a new job; 200 when an Idempotency-Key named an existing one. */
  @Post()
  async submit(
    @CurrentCaller() caller: Caller,
    @Headers('idempotency-key') key: string | undefined,
    @JsonBody() body: unknown,
    @Res({ passthrough: true }) res: ServerResponse,
  ): Promise<JobView> {
    const { created, job } = await this.jobs.submit(caller, body, key);
    res.statusCode = created ? 201 : 200;
    res.setHeader('Location', `/v1/jobs/${job.id}`);
    return job;
  }

  @Get()
  list(@CurrentCaller() caller: Caller, @Query() query: unknown): JobsPage {
    return this.jobs.list(caller, query);
  }

  @Get(':id')
  get(@CurrentCaller() caller: Caller, @Param('id') id: string, @Query() query: unknown): Promise<JobView> {
    return this.jobs.get(caller, id, query);
  }

  @Post(':id/cancel')
  @HttpCode(202)
  cancel(@CurrentCaller() caller: Caller, @Param('id') id: string, @JsonBody() body: unknown) {
    return this.jobs.cancel(caller, id, body);
  }

  @Get(':id/events')
  events(@CurrentCaller() caller: Caller, @Param('id') id: string): Promise<{ items: JobEventItem[] }> {
    return this.jobs.events(caller, id);
  }

  @Get(':id/logs')
  logsOf(@CurrentCaller() caller: Caller, @Param('id') id: string, @Query() query: unknown, @Res() res: ServerResponse): Promise<void> {
    return this.logs.send(caller, id, query, res);
  }
}
