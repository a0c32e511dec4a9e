import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../../../../libs/testing/src';

/** Tests only: a real OpenSSH sshd on a loopback port with generated keys, nothing shared with the system's. */

export const SSHD = '/usr/sbin/sshd';
const PRIVSEP_DIR = '/run/sshd';

/** Why the SSH tests cannot run here, or null when they can. */
export function sshdUnavailable(): string | null {
  if (!existsSync(SSHD)) return `${SSHD} not installed (apt-get install openssh-server; scripts/system-deps.sh does it)`;
  if (spawnSync('ssh-keygen', ['-?'], { stdio: 'ignore' }).error) return 'ssh-keygen not installed';
  // sshd insists on its privilege separation directory, which only the distro's service creates.
  if (!existsSync(PRIVSEP_DIR)) {
    if (process.getuid?.() !== 0) return `${PRIVSEP_DIR} missing and not root to create it`;
    mkdirSync(PRIVSEP_DIR, { recursive: true, mode: 0o755 });
  }
  return null;
}

export interface TestSshd {
  port: number;
  user: string;
  /** The client's private key file. */
  userKeyFile: string;
  /** The pinned fingerprint of the host key, 'SHA256:...'. */
  hostKey: string;
  /** Starts (again, on the same port and keys) after stop(). */
  start(): Promise<void>;
  /** Kills the listener and every connection's session process: clients see their connections drop. */
  stop(): Promise<void>;
}

function keygen(file: string): void {
  const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`);
}

export async function startTestSshd(dir: string): Promise<TestSshd> {
  const hostKeyFile = join(dir, 'host_ed25519');
  const userKeyFile = join(dir, 'user_ed25519');
  keygen(hostKeyFile);
  keygen(userKeyFile);
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${userKeyFile}.pub`));
  const fp = spawnSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${hostKeyFile}.pub`], { encoding: 'utf8' }).stdout.split(' ')[1];
  const port = await freePort();
  const config = join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKeyFile}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'StrictModes no',
      'UsePAM no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'PermitRootLogin prohibit-password',
      'MaxSessions 100',
      'MaxStartups 100',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  let proc: ChildProcess | null = null;
  const start = async () => {
    const p = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    proc = p;
    // Ready once the port accepts connections.
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (p.exitCode !== null) throw new Error(`sshd exited: ${err}`);
      const ok = await new Promise<boolean>((resolve) => {
        const s = connect(port, '127.0.0.1');
        s.once('connect', () => (s.destroy(), resolve(true)));
        s.once('error', () => resolve(false));
      });
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`sshd did not listen on ${port}: ${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stop = async () => {
    const p = proc;
    if (!p || p.exitCode !== null || !p.pid) return;
    // Each connection has its own session process, a child of the listener.
    const children = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .filter((d) => {
        try {
          return readFileSync(`/proc/${d}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[1] === String(p.pid);
        } catch {
          return false;
        }
      });
    for (const c of children) {
      try {
        process.kill(Number(c), 'SIGKILL');
      } catch {
        // gone already
      }
    }
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
    proc = null;
  };
  await start();
  return { port, user: userInfo().username, userKeyFile, hostKey: fp, start, stop };
}
