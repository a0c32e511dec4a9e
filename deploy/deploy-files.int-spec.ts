import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { ConfigError, TEST_VARIABLE_PREFIX, VARIABLES, loadConfig } from '../libs/config/src';
import { STREAMS } from '../libs/contracts/src/subjects';
import { findNatsServer } from '../libs/testing/src';
import { TEST_ONLY_VARIABLES, exampleLayout, serviceEnvironment, type ServiceName } from '../test/e2e/topology/topology';

/**
 * docker-compose.yml and deploy/ cannot run here (no Docker engine), so they are validated:
 * the compose file by docker-compose 1.29 (`config -q`) and by structure, every variable by
 * libs/config, the NATS configurations by `nats-server -t`, and the variables of compose, of
 * deploy/env/*.env and of the production-topology test against each other.
 */

const ROOT = resolve(__dirname, '..');
const COMPOSE_FILE = join(ROOT, 'docker-compose.yml');

interface ComposeService {
  image?: string;
  build?: unknown;
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  profiles?: string[];
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes: Record<string, unknown>;
}

/** `${NAME:-default}` → default (the values compose uses when nothing is set). */
const withDefaults = (v: string) => v.replace(/\$\{[A-Z0-9_]+:-([^}]*)\}/g, '$1');

const compose = parse(readFileSync(COMPOSE_FILE, 'utf8'), { merge: true }) as ComposeFile;
/** The Jobline services of the compose file and the service each runs. */
const JOBLINE_SERVICES = ['api', 'orchestrator', 'packager', 'executor'] as const;

function envFile(name: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(join(ROOT, 'deploy/env', `${name}.env`), 'utf8').split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (!m) throw new Error(`deploy/env/${name}.env: not KEY=value: ${line}`);
    out[m[1]] = m[2];
  }
  return out;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]));
}

describe('docker-compose.yml', () => {
  it('is valid for docker-compose 1.29 (`docker-compose config -q`)', () => {
    const r = spawnSync('docker-compose', ['-f', COMPOSE_FILE, 'config', '-q'], { cwd: ROOT, encoding: 'utf8' });
    if (r.error) {
      console.warn('docker-compose not installed (apt-get install docker-compose; scripts/system-deps.sh does it): the compose file is checked by structure only');
      return;
    }
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('runs every Jobline service, the packager included, as `jobline <service>` from the image', () => {
    const dockerfile = readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^ENTRYPOINT \["\/usr\/bin\/tini", "--", "jobline"\]$/m);
    expect(dockerfile).toMatch(/ln -s \/app\/bin\/jobline \/usr\/local\/bin\/jobline/);
    expect(existsSync(join(ROOT, 'bin/jobline'))).toBe(true);
    for (const name of JOBLINE_SERVICES) {
      const s = compose.services[name];
      expect({ name, command: s.command, build: s.build }).toEqual({ name, command: [name], build: { context: '.', dockerfile: 'deploy/Dockerfile' } });
    }
  });

  it('gives every long-running service a health check, Jobline ones on /readyz of the port their variable sets', () => {
    const ports: Record<(typeof JOBLINE_SERVICES)[number], string> = {
      api: 'JOBLINE_API_PORT',
      orchestrator: 'JOBLINE_ORCHESTRATOR_HTTP_PORT',
      packager: 'JOBLINE_PACKAGER_HTTP_PORT',
      executor: 'JOBLINE_EXECUTOR_HTTP_PORT',
    };
    for (const [name, s] of Object.entries(compose.services)) {
      if (name === 'certs') continue; // one-shot
      expect({ name, healthcheck: Boolean(s.healthcheck?.test?.length) }).toEqual({ name, healthcheck: true });
    }
    for (const name of JOBLINE_SERVICES) {
      const s = compose.services[name];
      const port = s.environment![ports[name]];
      expect(s.healthcheck!.test.join(' ')).toContain(`http://127.0.0.1:${port}/readyz`);
    }
  });

  it('keeps every piece of state on a named volume: data folders, work roots, the git cache, the NATS and PostgreSQL stores, the certificates', () => {
    const mounts = (s: ComposeService) =>
      (s.volumes ?? []).map((v) => v.split(':')).filter(([src]) => !src.startsWith('.')).map(([src, dst]) => ({ src, dst }));
    const onVolume = (service: string, path: string) => {
      const m = mounts(compose.services[service]).find((x) => path === x.dst || path.startsWith(`${x.dst}/`));
      expect({ service, path, volume: m && m.src in compose.volumes }).toEqual({ service, path, volume: true });
    };
    for (const name of JOBLINE_SERVICES) onVolume(name, compose.services[name].environment!.JOBLINE_DATA_DIR);
    onVolume('executor', compose.services.executor.environment!.JOBLINE_WORK_ROOT);
    onVolume('packager', compose.services.packager.environment!.JOBLINE_PACKAGER_WORK_DIR);
    onVolume('api', compose.services.api.environment!.JOBLINE_TLS_DIR);
    onVolume('certs', '/data/certs');
    onVolume('nats', compose.services.nats.environment!.NATS_STORE_DIR);
    onVolume('postgres', '/var/lib/postgresql/data');
    // Every Jobline service waits for what it needs to be healthy.
    for (const name of JOBLINE_SERVICES) expect(compose.services[name].depends_on?.nats?.condition).toBe('service_healthy');
    for (const name of ['api', 'orchestrator']) expect(compose.services[name].depends_on?.postgres?.condition).toBe('service_healthy');
    expect(compose.services.api.depends_on?.certs?.condition).toBe('service_completed_successfully');
  });

  it('sets only JOBLINE_* variables libs/config knows, with values it accepts, for each service', () => {
    for (const name of JOBLINE_SERVICES) {
      const env = Object.fromEntries(Object.entries(compose.services[name].environment!).map(([k, v]) => [k, withDefaults(String(v))]));
      expect(() => loadConfig(env, 'service')).not.toThrow();
    }
    // The NATS server takes its own variables, none of them a Jobline service's unknown one.
    for (const k of Object.keys(compose.services.nats.environment!)) if (k.startsWith('JOBLINE_')) expect(k in VARIABLES).toBe(true);
  });
});

describe('deploy/', () => {
  it('names no JOBLINE_* variable that libs/config does not know (unknown ones stop start-up)', () => {
    // JetStream stream names share the prefix; they are not variables.
    const streams = new Set<string>(Object.values(STREAMS));
    const unknown: string[] = [];
    for (const file of [COMPOSE_FILE, ...filesUnder(join(ROOT, 'deploy'))].filter((f) => !f.endsWith('.int-spec.ts'))) {
      for (const [name] of readFileSync(file, 'utf8').matchAll(/\bJOBLINE_[A-Z0-9_]*[A-Z0-9]\b/g)) {
        if (!(name in VARIABLES) && !streams.has(name) && !name.startsWith(TEST_VARIABLE_PREFIX)) unknown.push(`${file.slice(ROOT.length + 1)}: ${name}`);
      }
    }
    expect(unknown).toEqual([]);
  });

  it('deploy/env/*.env are complete configurations libs/config accepts', () => {
    for (const name of ['api', 'orchestrator', 'packager', 'executor', 'executor-ssh']) {
      try {
        loadConfig(envFile(name), 'service');
      } catch (err) {
        throw new Error(`deploy/env/${name}.env: ${err instanceof ConfigError ? err.message : String(err)}`, { cause: err });
      }
    }
  });

  it('the production-topology test starts each service with the variables of deploy/env and of compose (only the listed test settings added)', () => {
    const layout = exampleLayout();
    const names = (o: Record<string, unknown>) => Object.keys(o).sort();
    for (const name of ['api', 'orchestrator', 'packager', 'executor', 'executor-ssh'] as ServiceName[]) {
      const test = serviceEnvironment(name, layout);
      const documented = envFile(name);
      const extra = names(test).filter((k) => !(k in documented));
      expect({ name, extraNotListed: extra.filter((k) => !(k in TEST_ONLY_VARIABLES)) }).toEqual({ name, extraNotListed: [] });
      expect({ name, documentedNotTested: names(documented).filter((k) => !(k in test)) }).toEqual({ name, documentedNotTested: [] });
      if (name === 'executor-ssh') continue;
      const composed = compose.services[name].environment!;
      expect({ name, composeNotTested: names(composed).filter((k) => !(k in test)) }).toEqual({ name, composeNotTested: [] });
      expect({ name, documentedNotComposed: names(documented).filter((k) => !(k in composed)) }).toEqual({ name, documentedNotComposed: [] });
    }
  });
});

describe('deploy/nats', () => {
  const nats = findNatsServer();
  const version = nats ? /v(\d+)\.(\d+)\.(\d+)/.exec(spawnSync(nats, ['--version'], { encoding: 'utf8' }).stdout) : null;
  const atLeast210 = version !== null && (Number(version[1]) > 2 || (Number(version[1]) === 2 && Number(version[2]) >= 10));
  const check = (file: string, env: Record<string, string> = { NATS_STORE_DIR: '/tmp/jobline-nats-check', JOBLINE_NATS_PASSWORD: 'x', NATS_ACME_PASSWORD: 'y', NATS_GLOBEX_PASSWORD: 'z' }) =>
    spawnSync(nats!, ['-t', '-c', join(ROOT, 'deploy/nats', file)], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', ...env } });

  (nats ? it : it.skip)('jobline.conf is accepted by nats-server -t (and refused without its variables)', () => {
    const r = check('jobline.conf');
    expect(r.stderr).toMatch(/configuration file .*jobline\.conf is valid/);
    expect(r.status).toBe(0);
    expect(check('jobline.conf', {}).stderr).toMatch(/NATS_STORE_DIR/);
  });

  (nats ? it : it.skip)('jobline-fsync.conf is jobline.conf plus sync_interval: always — accepted from nats-server 2.10, refused for exactly that field before', () => {
    const r = check('jobline-fsync.conf');
    if (atLeast210) {
      expect(r.status).toBe(0);
    } else {
      console.warn(`nats-server ${version?.[0]} predates sync_interval (2.10): jobline-fsync.conf is checked to fail on that field alone`);
      expect(r.stderr.trim()).toMatch(/jobline-fsync\.conf:\d+:\d+: unknown field "sync_interval"$/);
    }
    // The two jetstream blocks differ only by the sync setting (the included one is replaced whole).
    const block = (file: string) => /^jetstream \{\n([\s\S]*?)\n\}/m.exec(readFileSync(join(ROOT, 'deploy/nats', file), 'utf8'))![1].split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    expect(block('jobline-fsync.conf')).toEqual([...block('jobline.conf'), 'sync_interval: always']);
    // Compose runs a server that takes it.
    expect(compose.services.nats.command).toEqual(['--config', '/etc/nats/jobline-fsync.conf']);
    expect(compose.services.nats.image).toMatch(/^nats:2\.(1\d|[2-9]\d)/);
  });
});
