import { isConnectionError, maskPostgresUrl, retryDelayMs } from './postgres.connection';
import { isPostgresUrl, parsePostgresUrl } from './open-event-store';

describe('PostgreSQL URLs', () => {
  it('takes postgres:// and postgresql://, nothing else', () => {
    expect(isPostgresUrl('postgres://h/db')).toBe(true);
    expect(isPostgresUrl('postgresql://h/db')).toBe(true);
    for (const spec of ['sqlite', 'pg://h/db', 'kurrentdb://h:2113', 'POSTGRES://h/db', ' postgres://h/db']) expect(isPostgresUrl(spec)).toBe(false);
  });

  it('takes the schema parameter out of the URL and leaves the rest', () => {
    expect(parsePostgresUrl('postgres://u:p@db.example:5432/jobline?schema=prod&sslmode=require')).toEqual({
      connectionString: 'postgres://u:p@db.example:5432/jobline?sslmode=require',
      schema: 'prod',
    });
    expect(parsePostgresUrl('postgresql://db.example/jobline')).toEqual({ connectionString: 'postgresql://db.example/jobline' });
    expect(parsePostgresUrl('postgres:///jobline?host=/var/run/postgresql')).toEqual({
      connectionString: 'postgres:///jobline?host=/var/run/postgresql',
    });
  });

  it('refuses a URL without a host, one that does not parse, and two schemas', () => {
    expect(() => parsePostgresUrl('postgres:///jobline')).toThrow(/needs postgres:\/\/ and a host/);
    expect(() => parsePostgresUrl('postgres://u:secret@[bad/db')).toThrow(/not a valid PostgreSQL URL/);
    expect(() => parsePostgresUrl('postgres://u:secret@[bad/db')).not.toThrow(/secret/);
    expect(() => parsePostgresUrl('postgres://h/db?schema=a&schema=b')).toThrow(/more than one schema/);
  });

  it('masks the password in the authority and in a password= parameter', () => {
    expect(maskPostgresUrl('postgres://jobline:s3cr3t@db:5432/jobline')).toBe('postgres://jobline:***@db:5432/jobline');
    expect(maskPostgresUrl('postgres://jobline:p@ss@db/jobline')).toBe('postgres://jobline:***@db/jobline');
    expect(maskPostgresUrl('postgres://db/jobline?user=j&password=s3cr3t&sslmode=require')).toBe(
      'postgres://db/jobline?user=j&password=***&sslmode=require',
    );
    expect(maskPostgresUrl('postgres://jobline@db/jobline')).toBe('postgres://jobline@db/jobline');
  });
});

describe('isConnectionError', () => {
  const withCode = (code: string, message = 'x'): Error => Object.assign(new Error(message), { code });

  it('is true for a lost or refused connection and a server shutting down', () => {
    for (const error of [
      withCode('ECONNREFUSED'),
      withCode('ECONNRESET'),
      withCode('08006'),
      withCode('57P01', 'terminating connection due to administrator command'),
      new Error('Connection terminated unexpectedly'),
      new Error('Connection terminated due to connection timeout'),
      new Error('timeout exceeded when trying to connect'),
    ]) {
      expect(isConnectionError(error)).toBe(true);
    }
  });

  it('is false for errors of the statement itself', () => {
    for (const error of [withCode('23505'), withCode('JL001'), withCode('42P01'), new TypeError('Do not know how to serialize a BigInt'), 'text']) {
      expect(isConnectionError(error)).toBe(false);
    }
  });

  it('waits 100 ms, doubling, at most 2 s', () => {
    expect([0, 1, 2, 3, 4, 5, 9].map(retryDelayMs)).toEqual([100, 200, 400, 800, 1600, 2000, 2000]);
  });
});
