import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fingerprintOf } from './ssh-connection';
import { loadSshInventory, parseSshInventory } from './ssh-inventory';

const FP = `SHA256:${'a'.repeat(43)}`;
const host = { name: 'build-1', address: '10.0.0.5', user: 'jobs', privateKeyFile: 'keys/id_ed25519', hostKey: FP };

describe('SSH inventory', () => {
  it('applies defaults and resolves key files against the inventory folder', () => {
    const inv = parseSshInventory({ hosts: [host] }, '/etc/jobline');
    expect(inv.hosts[0]).toMatchObject({ port: 22, capacity: 4, remoteRoot: '/tmp/jobline-work', labels: {}, privateKeyFile: '/etc/jobline/keys/id_ed25519' });
    expect(inv).toMatchObject({ connectTimeoutMs: 10_000, commandTimeoutMs: 30_000, keepaliveIntervalMs: 5_000, keepaliveCountMax: 3, keepWorkspaces: 'never' });
  });

  it('requires a pinned host key unless the explicit development setting is on', () => {
    const { hostKey: _, ...unpinned } = host;
    expect(() => parseSshInventory({ hosts: [unpinned] })).toThrow(/hosts\.0: each host needs its pinned hostKey/);
    expect(parseSshInventory({ hosts: [{ ...unpinned, insecureAcceptAnyHostKey: true }] }).hosts[0].insecureAcceptAnyHostKey).toBe(true);
    expect(() => parseSshInventory({ hosts: [{ ...host, insecureAcceptAnyHostKey: true }] })).toThrow(/exclude each other/);
    expect(() => parseSshInventory({ hosts: [{ ...unpinned, insecureAcceptAnyHostKey: false }] })).toThrow(/insecureAcceptAnyHostKey/);
  });

  it('rejects bad fingerprints, names, ports, duplicate names, unknown fields and missing credentials, listing each', () => {
    expect(() => parseSshInventory({ hosts: [{ ...host, hostKey: 'MD5:aa:bb' }] })).toThrow(/OpenSSH SHA256 fingerprint/);
    expect(() => parseSshInventory({ hosts: [{ ...host, name: 'a.b' }] })).toThrow(/executorId must be/);
    expect(() => parseSshInventory({ hosts: [{ ...host, port: 70000 }] })).toThrow(/hosts\.0\.port/);
    expect(() => parseSshInventory({ hosts: [host, host] })).toThrow(/unique/);
    expect(() => parseSshInventory({ hosts: [{ ...host, passwd: 'x' }] })).toThrow(/passwd/);
    const { privateKeyFile: _, ...keyless } = host;
    expect(() => parseSshInventory({ hosts: [keyless] })).toThrow(/privateKeyFile or agent/);
    expect(parseSshInventory({ hosts: [{ ...keyless, agent: true }] }).hosts[0].agent).toBe(true);
    expect(() => parseSshInventory({ hosts: [{ ...host, remoteRoot: 'relative/dir' }] })).toThrow(/absolute path/);
    expect(() => parseSshInventory({ hosts: [] })).toThrow(/hosts/);
  });

  it('loads a JSON file, with a clear error when it is missing or not JSON', () => {
    const dir = mkdtempSync(join(tmpdir(), 'inv-'));
    try {
      const file = join(dir, 'inventory.json');
      expect(() => loadSshInventory(file)).toThrow(/cannot read SSH inventory/);
      writeFileSync(file, '{ hosts: ');
      expect(() => loadSshInventory(file)).toThrow(/is not JSON/);
      writeFileSync(file, JSON.stringify({ hosts: [host] }));
      expect(loadSshInventory(file).hosts[0].privateKeyFile).toBe(join(dir, 'keys/id_ed25519'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fingerprints a key blob the way ssh-keygen -l prints it', () => {
    // sha256('') in base64, without the padding.
    expect(fingerprintOf(Buffer.alloc(0))).toBe('SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU');
  });
});
