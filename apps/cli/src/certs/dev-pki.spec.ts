import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { tempDir } from '../../../../libs/testing/src';
import { certsInit, certsIssue, createCa, issueCertificate, serverTlsFiles } from './dev-pki';

describe('development PKI', () => {
  it('issues client certificates that chain to the CA, with CN the owner and OU=admin for admins', async () => {
    const ca = await createCa();
    const caCert = new X509Certificate(ca.certPem);
    expect(caCert.ca).toBe(true);
    const alice = new X509Certificate((await issueCertificate(ca, { commonName: 'alice' })).certPem);
    const ops = new X509Certificate((await issueCertificate(ca, { commonName: 'ops', admin: true })).certPem);
    expect(alice.subject).toBe('CN=alice');
    expect(ops.subject.split('\n').sort()).toEqual(['CN=ops', 'OU=admin']);
    for (const c of [alice, ops]) {
      expect(c.ca).toBe(false);
      expect(c.checkIssued(caCert)).toBe(true);
      expect(c.verify(caCert.publicKey)).toBe(true);
      expect(c.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    }
    // Another CA's certificate does not verify with this CA's key.
    const other = new X509Certificate((await issueCertificate(await createCa(), { commonName: 'alice' })).certPem);
    expect(other.verify(caCert.publicKey)).toBe(false);
  });

  it('issues a server certificate for its names, and keys that match', async () => {
    const ca = await createCa();
    const pair = await issueCertificate(ca, { commonName: 'localhost', serverNames: ['localhost', '127.0.0.1'] });
    const cert = new X509Certificate(pair.certPem);
    expect(cert.checkHost('localhost')).toBe('localhost');
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(cert.checkIP('10.0.0.1')).toBeUndefined();
    expect(cert.checkPrivateKey(createPrivateKey(pair.keyPem))).toBe(true);
  });

  it('honours validity dates and refuses bad names', async () => {
    const ca = await createCa();
    const notAfter = new Date(Date.now() - 86_400_000);
    const expired = new X509Certificate((await issueCertificate(ca, { commonName: 'old', notBefore: new Date(notAfter.getTime() - 86_400_000), notAfter })).certPem);
    expect(new Date(expired.validTo).getTime()).toBeLessThan(Date.now());
    await expect(issueCertificate(ca, { commonName: 'not a name' })).rejects.toThrow('invalid certificate name "not a name"');
  });

  it('certs init writes a CA, server and admin certificate (keys private); issue adds more; init refuses to replace the CA', async () => {
    const dir = tempDir();
    try {
      const r = await certsInit(dir.path);
      expect(statSync(r.ca.key).mode & 0o777).toBe(0o600);
      expect(new X509Certificate(serverTlsFiles(dir.path)!.cert).checkIP('127.0.0.1')).toBe('127.0.0.1');
      expect(new X509Certificate(serverTlsFiles(dir.path)!.cert).checkIP('::1')).toBe('::1');
      const admin = new X509Certificate(readFileSync(r.admin.cert));
      expect(admin.subject).toContain('OU=admin');
      const bob = await certsIssue(dir.path, 'bob');
      const caCert = new X509Certificate(serverTlsFiles(dir.path)!.ca);
      expect(new X509Certificate(readFileSync(bob.cert)).verify(caCert.publicKey)).toBe(true);
      await expect(certsInit(dir.path)).rejects.toThrow('a CA already exists');
      await expect(certsIssue(dir.path, 'server')).rejects.toThrow('names a file of the CA or the server');
    } finally {
      dir.remove();
    }
  });

  it('certs issue without a CA says to run init', async () => {
    const dir = tempDir();
    try {
      await expect(certsIssue(dir.path, 'bob')).rejects.toThrow('run `jobline certs init` first');
      expect(serverTlsFiles(dir.path)).toBeNull();
    } finally {
      dir.remove();
    }
  });
});
