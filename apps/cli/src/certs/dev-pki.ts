import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { randomBytes, webcrypto } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { OwnerSchema } from '../../../../libs/contracts/src';

// The library's types name the DOM's WebCrypto types; node's webcrypto implements them.
type X509Crypto = Parameters<typeof x509.cryptoProvider.set>[0];
type X509KeyPair = Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[0]['keys'];
type X509Key = X509KeyPair['privateKey'];
x509.cryptoProvider.set(webcrypto as unknown as X509Crypto);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 24 * 3600 * 1000;

/** A certificate and its private key, both PEM. */
export interface KeyPairPem {
  certPem: string;
  keyPem: string;
}

export interface ValidityOptions {
  /** Default: an hour ago (tolerates clocks a little behind). */
  notBefore?: Date;
  /** Default: notBefore + `days`. */
  notAfter?: Date;
  /** Default 825 for leaves, 3650 for a CA. */
  days?: number;
}

export interface IssueOptions extends ValidityOptions {
  /** The identity: the owner for a client (1-64 of [A-Za-z0-9_-]). */
  commonName: string;
  /** OU=admin: the holder sees and controls every owner's jobs. */
  admin?: boolean;
  /** A server certificate for these DNS names / IP addresses (else a client certificate). */
  serverNames?: string[];
}

function validity(o: ValidityOptions, defaultDays: number): { notBefore: Date; notAfter: Date } {
  const notBefore = o.notBefore ?? new Date(Date.now() - 3600 * 1000);
  const notAfter = o.notAfter ?? new Date(notBefore.getTime() + (o.days ?? defaultDays) * DAY_MS);
  if (!(notAfter > notBefore)) throw new Error('notAfter must be after notBefore');
  return { notBefore, notAfter };
}

const serial = () => `01${randomBytes(15).toString('hex')}`;

async function keyPem(key: X509Key): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key as webcrypto.CryptoKey), 'PRIVATE KEY');
}

/** A self-signed development CA (P-256, SHA-256). */
export async function createCa(o: ValidityOptions & { commonName?: string } = {}): Promise<KeyPairPem> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as unknown as X509KeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: new x509.Name([{ CN: [o.commonName ?? 'Jobline development CA'] }, { O: ['Jobline'] }]),
    ...validity(o, 3650),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await keyPem(keys.privateKey) };
}

/** A server or client certificate signed by `ca`. */
export async function issueCertificate(ca: KeyPairPem, o: IssueOptions): Promise<KeyPairPem> {
  const cn = OwnerSchema.safeParse(o.commonName);
  if (!cn.success && !o.serverNames) throw new Error(`invalid certificate name ${JSON.stringify(o.commonName)}: ${cn.error.issues[0].message.replace(/^owner/, 'the name')}`);
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(ca.keyPem), ALG, false, ['sign']);
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as unknown as X509KeyPair;
  const subject: Record<string, string[]>[] = [{ CN: [o.commonName] }];
  if (o.admin) subject.push({ OU: ['admin'] });
  const server = o.serverNames !== undefined;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: new x509.Name(subject),
    issuer: caCert.subjectName,
    ...validity(o, 825),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: caKey as unknown as X509Key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([server ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
      ...(server ? [new x509.SubjectAlternativeNameExtension(o.serverNames!.map((n) => ({ type: isIP(n) ? ('ip' as const) : ('dns' as const), value: n })))] : []),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await keyPem(keys.privateKey) };
}

/** Where `jobline certs` keeps its files: <data-dir>/certs. */
export const certsDir = (dataDir: string) => join(resolve(dataDir), 'certs');

/** Paths of one certificate and key in a certs folder. */
export const certPaths = (dir: string, name: string) => ({ cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) });

function save(dir: string, name: string, pair: KeyPairPem): { cert: string; key: string } {
  const p = certPaths(dir, name);
  writeFileSync(p.cert, pair.certPem);
  writeFileSync(p.key, pair.keyPem, { mode: 0o600 });
  chmodSync(p.key, 0o600);
  return p;
}

export interface CertsInitResult {
  dir: string;
  ca: { cert: string; key: string };
  server: { cert: string; key: string };
  admin: { cert: string; key: string };
}

/**
 * `jobline certs init`: a development CA, a server certificate for localhost / 127.0.0.1 / ::1
 * and an admin client certificate (CN=admin, OU=admin). Refuses to replace an existing CA
 * unless `force`: every certificate it issued would stop working.
 */
export async function certsInit(dataDir: string, o: { force?: boolean; serverNames?: string[] } = {}): Promise<CertsInitResult> {
  const dir = certsDir(dataDir);
  const caPaths = certPaths(dir, 'ca');
  if (existsSync(caPaths.cert) && !o.force) throw new Error(`a CA already exists in ${dir}; use --force to replace it (certificates it issued stop working)`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = await createCa();
  const caFiles = save(dir, 'ca', ca);
  const server = save(dir, 'server', await issueCertificate(ca, { commonName: 'localhost', serverNames: o.serverNames ?? ['localhost', '127.0.0.1', '::1'] }));
  const admin = save(dir, 'admin', await issueCertificate(ca, { commonName: 'admin', admin: true }));
  return { dir, ca: caFiles, server, admin };
}

/** `jobline certs issue NAME [--admin]`: a client certificate for owner NAME, signed by the CA of `certs init`. */
export async function certsIssue(dataDir: string, name: string, o: { admin?: boolean; days?: number } = {}): Promise<{ cert: string; key: string }> {
  const dir = certsDir(dataDir);
  const caPaths = certPaths(dir, 'ca');
  if (!existsSync(caPaths.cert) || !existsSync(caPaths.key)) throw new Error(`no CA in ${dir}: run \`jobline certs init\` first`);
  if (['ca', 'server'].includes(name)) throw new Error(`"${name}" names a file of the CA or the server; choose another name`);
  const ca = { certPem: readFileSync(caPaths.cert, 'utf8'), keyPem: readFileSync(caPaths.key, 'utf8') };
  return save(dir, name, await issueCertificate(ca, { commonName: name, admin: o.admin, days: o.days }));
}

/** The gRPC server's TLS files made by `certs init`, or null when there are none yet. */
export function serverTlsFiles(dataDir: string): { ca: Buffer; cert: Buffer; key: Buffer } | null {
  const dir = certsDir(dataDir);
  const ca = certPaths(dir, 'ca').cert;
  const server = certPaths(dir, 'server');
  if (![ca, server.cert, server.key].every((p) => existsSync(p))) return null;
  return { ca: readFileSync(ca), cert: readFileSync(server.cert), key: readFileSync(server.key) };
}
