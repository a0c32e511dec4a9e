import { status as GrpcStatus } from '@grpc/grpc-js';
import { ERROR_CODES, ERROR_TABLE, JoblineError, ValidationError } from '../../../libs/contracts/src';
import { toGrpcError } from './grpc/jobs.grpc-mapping';
import { toProblem } from './http/problem.filter';
import { errorFrame } from './ws/ws-frames';

/** Every edge of the api maps every error code from the one table (libs/contracts/src/errors.ts), nothing by hand. */
describe('the api maps every error code from ERROR_TABLE', () => {
  it.each(ERROR_CODES)('%s: REST status and problem type, gRPC status, WebSocket code', (code) => {
    const err = new JoblineError(code, `why ${code}`);
    expect(toProblem(err)).toMatchObject({ status: ERROR_TABLE[code].http, code, type: `urn:jobline:problem:${code}`, detail: `why ${code}` });
    expect(toGrpcError(err)).toEqual({ code: GrpcStatus[ERROR_TABLE[code].grpc], details: `why ${code}` });
    expect(errorFrame(err).code).toBe(ERROR_TABLE[code].ws);
  });

  it('anything that is not a JoblineError is internal on every edge, without its details', () => {
    const err = new Error('secret detail');
    expect(toProblem(err)).toMatchObject({ status: ERROR_TABLE.internal.http, code: 'internal', detail: 'internal error' });
    expect(toGrpcError(err)).toEqual({ code: GrpcStatus[ERROR_TABLE.internal.grpc], details: 'internal error' });
    expect(errorFrame(err)).toEqual({ type: 'error', code: ERROR_TABLE.internal.ws, message: 'internal error' });
  });

  it('a validation error names its fields on REST and gRPC', () => {
    const err = new ValidationError('invalid job spec', [{ path: 'spec.priority', message: 'bad' }]);
    expect(toProblem(err).errors).toEqual([{ path: 'spec.priority', message: 'bad' }]);
    expect(toGrpcError(err).details).toBe('invalid job spec: spec.priority: bad');
  });
});
