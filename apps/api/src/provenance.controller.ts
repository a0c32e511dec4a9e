import { Controller, Get, Inject, Param, UseGuards } from '@nestjs/common';
import type { DsseEnvelope } from '../../../libs/event-store/src/attestation';
import type { ChainVerification } from '../../../libs/event-store/src/chain-verifier';
import type { Caller } from './api-tokens';
import { AuthGuard, CurrentCaller } from './http/auth.guard';
import { ProvenanceService } from './provenance.service';

/** REST edge of provable history: parse, call, map. */
@Controller('v1')
@UseGuards(AuthGuard)
export class ProvenanceController {
  constructor(@Inject(ProvenanceService) private readonly provenance: ProvenanceService) {}

  @Get('jobs/:id/verify')
  verifyJob(@CurrentCaller() caller: Caller, @Param('id') id: string): Promise<ChainVerification> {
    return this.provenance.verifyJob(caller, id);
  }

  @Get('jobs/:id/attestation')
  attestation(@CurrentCaller() caller: Caller, @Param('id') id: string): Promise<DsseEnvelope> {
    return this.provenance.attestation(caller, id);
  }

  @Get('verify')
  verifyAll(@CurrentCaller() caller: Caller): Promise<ChainVerification> {
    return this.provenance.verifyAll(caller);
  }
}
