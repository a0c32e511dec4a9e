import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { ExecutorIdSchema } from '../../../../libs/contracts/src';

/** An OpenSSH-style SHA256 fingerprint, as `ssh-keygen -lf` prints it (base64 without padding). */
export const HostKeyFingerprintSchema = z
  .string()
  .regex(/^SHA256:[A-Za-z0-9+/]{43}$/, "hostKey must be an OpenSSH SHA256 fingerprint, e.g. 'SHA256:' + 43 base64 characters (ssh-keygen -lf <host key>.pub)");

export const SshHostSchema = z
  .strictObject({
    /** The host's name: the executor id and what `target.host` names (a subject token). */
    name: ExecutorIdSchema,
    address: z.string().min(1),
    port: z.number().int().min(1).max(65535).default(22),
    user: z.string().min(1),
    /** A private key file (OpenSSH or PEM format; unencrypted, or with passphraseEnv). */
    privateKeyFile: z.string().min(1).optional(),
    /** Use the ssh-agent at SSH_AUTH_SOCK (true) or at this socket path. */
    agent: z.union([z.literal(true), z.string().min(1)]).optional(),
    /** The host's pinned key. Required unless insecureAcceptAnyHostKey. */
    hostKey: HostKeyFingerprintSchema.optional(),
    /** Development only: accept whatever key the host presents (a man in the middle would go unnoticed). */
    insecureAcceptAnyHostKey: z.literal(true).optional(),
    /** Attempts at the same time on this host (default 4). */
    capacity: z.number().int().min(1).max(1024).default(4),
    /** Where per-attempt workspaces are made on the host (default /tmp/jobline-work); <remoteRoot>/<name> is this executor's. */
    remoteRoot: z
      .string()
      .regex(/^\/[A-Za-z0-9._/-]*$/, 'remoteRoot must be an absolute path of [A-Za-z0-9._/-]')
      .default('/tmp/jobline-work'),
    labels: z.record(z.string(), z.string()).default({}),
  })
  .refine((h) => h.privateKeyFile || h.agent, { message: 'each host needs privateKeyFile or agent' })
  .refine((h) => h.hostKey || h.insecureAcceptAnyHostKey, {
    message: 'each host needs its pinned hostKey (SHA256:...); insecureAcceptAnyHostKey: true is for development only',
  })
  .refine((h) => !(h.hostKey && h.insecureAcceptAnyHostKey), { message: 'hostKey and insecureAcceptAnyHostKey exclude each other' });

export type SshHost = z.output<typeof SshHostSchema>;
export type SshHostInput = z.input<typeof SshHostSchema>;

export const SshInventorySchema = z
  .strictObject({
    hosts: z.array(SshHostSchema).min(1),
    /** Timeout of the TCP connect + SSH handshake + auth (default 10,000 ms). */
    connectTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
    /** Timeout of the executor's own remote commands (workspace, kill, cleanup; default 30,000 ms). */
    commandTimeoutMs: z.number().int().min(100).max(3_600_000).default(30_000),
    /** SSH keepalive period (default 5,000 ms); a host silent for keepaliveCountMax periods is dropped. */
    keepaliveIntervalMs: z.number().int().min(100).max(600_000).default(5_000),
    keepaliveCountMax: z.number().int().min(1).max(100).default(3),
    /** Keep workspaces after an attempt: never (default), failed (non-zero exit) or always — for debugging. */
    keepWorkspaces: z.enum(['never', 'failed', 'always']).default('never'),
  })
  .refine((inv) => new Set(inv.hosts.map((h) => h.name)).size === inv.hosts.length, { message: 'host names must be unique' });

export type SshInventory = z.output<typeof SshInventorySchema>;
export type SshInventoryInput = z.input<typeof SshInventorySchema>;

/** Validates an inventory; throws one error listing every problem. Relative key files resolve against baseDir. */
export function parseSshInventory(value: unknown, baseDir = '.'): SshInventory {
  const r = SshInventorySchema.safeParse(value);
  if (!r.success) {
    throw new Error(`invalid SSH inventory: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  }
  for (const h of r.data.hosts) if (h.privateKeyFile) h.privateKeyFile = resolve(baseDir, h.privateKeyFile);
  return r.data;
}

/** Reads and validates an inventory file (JSON). */
export function loadSshInventory(file: string): SshInventory {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read SSH inventory ${file}: ${(err as Error).message}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`SSH inventory ${file} is not JSON: ${(err as Error).message}`, { cause: err });
  }
  return parseSshInventory(value, dirname(resolve(file)));
}
