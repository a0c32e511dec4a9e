import { randomBytes, randomUUID } from 'node:crypto';
import { join, resolve } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import type { Msg, NatsConnection, Status, Subscription } from '@nats-io/nats-core';
import { loadConfig } from '../../libs/config/src';
import { decodeLogChunk, subjects, type LogChunk } from '../../libs/contracts/src';
import { eventually, startNatsServer, tempDir, type RunningNatsServer, type TempDir } from '../../libs/testing/src';
import { startOrchestrator, type OrchestratorHandle } from '../../apps/orchestrator/src/start-orchestrator';
import { startExecutor, type ExecutorServiceHandle } from '../../apps/executor/src/node/start-executor';

/**
 * Owner isolation on the bus (invariant 6, issue 18), against a real nats-server started from
 * deploy/nats/jobline.conf as shipped (its variables filled with test passwords, a random
 * loopback port, a temporary store) and a real orchestrator and executor behind it, started
 * with their start functions as the `jobline` service user. Two integration users of that
 * file, `acme` and `globex`, each limited to its own owner prefix.
 */

const CONF = resolve(__dirname, '../../deploy/nats/jobline.conf');
const password = () => `p${randomBytes(12).toString('hex')}`;

interface Client {
  nc: NatsConnection;
  /** Status events of the connection so far (permission violations arrive there). */
  statuses: Status[];
}

async function integration(url: string, user: string, pass: string): Promise<Client> {
  const nc = await connect({ servers: url, user, pass, inboxPrefix: `_INBOX_${user}` });
  const statuses: Status[] = [];
  void (async () => {
    for await (const s of nc.status()) statuses.push(s);
  })();
  return { nc, statuses };
}

/** Every message of a subscription, as it arrives. */
function collect(sub: Subscription): Msg[] {
  const got: Msg[] = [];
  void (async () => {
    for await (const m of sub) got.push(m);
  })().catch(() => undefined);
  return got;
}

/** The error a refused subscription is closed with. */
async function refusal(nc: NatsConnection, subject: string): Promise<Error> {
  const sub = nc.subscribe(subject);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const closed = await Promise.race([sub.closed, new Promise<'open'>((r) => (timer = setTimeout(() => r('open'), 20_000)))]);
  clearTimeout(timer);
  if (closed === 'open') sub.unsubscribe();
  if (!(closed instanceof Error)) throw new Error(`subscribing to ${subject} was not refused (${String(closed)})`);
  return closed;
}

const spec = (lines: number, word: string) => ({ command: `for i in $(seq 1 ${lines}); do echo ${word}-$i; done; echo ${word}-err >&2` });

describe('NATS owner isolation with deploy/nats/jobline.conf', () => {
  let dir: TempDir;
  let server: RunningNatsServer;
  let orchestrator: OrchestratorHandle | undefined;
  let executor: ExecutorServiceHandle | undefined;
  const secrets = { JOBLINE_NATS_PASSWORD: password(), NATS_ACME_PASSWORD: password(), NATS_GLOBEX_PASSWORD: password() };

  beforeAll(async () => {
    dir = tempDir('jobline-owner-bus-');
    const storeDir = join(dir.path, 'nats');
    server = await startNatsServer({ storeDir, configFile: CONF, env: { NATS_STORE_DIR: storeDir, ...secrets } });
    const config = loadConfig({
      JOBLINE_NATS_URL: server.url,
      JOBLINE_NATS_USER: 'jobline',
      JOBLINE_NATS_PASSWORD: secrets.JOBLINE_NATS_PASSWORD,
      JOBLINE_DATA_DIR: join(dir.path, 'data'),
      JOBLINE_ORCHESTRATOR_HTTP_PORT: 'off',
      JOBLINE_EXECUTOR_HTTP_PORT: 'off',
      JOBLINE_SANDBOX: 'none',
      JOBLINE_LOG_LEVEL: 'error',
    });
    orchestrator = await startOrchestrator(config);
    executor = await startExecutor(config);
  }, 120_000);

  afterAll(async () => {
    await executor?.stop();
    await orchestrator?.stop();
    await server?.stop();
    dir?.remove();
  }, 60_000);

  it("acme submits, follows its events and its log over NATS; globex receives none of it and is refused on acme's subjects and on jobline.evt.>", async () => {
    const acme = await integration(server.url, 'acme', secrets.NATS_ACME_PASSWORD);
    const globex = await integration(server.url, 'globex', secrets.NATS_GLOBEX_PASSWORD);
    try {
      // globex listens to everything it may: its whole owner prefix and its inbox.
      const globexOwn = collect(globex.nc.subscribe(subjects.ownerAll('globex')));
      const globexInbox = collect(globex.nc.subscribe('_INBOX_globex.>'));
      // Everything else that could carry acme's messages is refused.
      for (const subject of [subjects.ownerAll('acme'), 'jobline.owner.*.>', 'jobline.owner.>', subjects.eventsAll, subjects.logsAll, 'jobline.>', '>', '_INBOX_acme.>', '_INBOX.>', '$JS.API.>']) {
        const err = await refusal(globex.nc, subject);
        expect({ subject, name: err.name, message: err.message }).toEqual({ subject, name: 'PermissionViolationError', message: expect.stringContaining(`Subscription to "${subject}"`) });
      }

      const jobId = randomUUID();
      const events = collect(acme.nc.subscribe(subjects.ownerEventsOfJob('acme', jobId)));
      const logs = collect(acme.nc.subscribe(subjects.ownerLogs('acme', jobId)));
      // acme is refused on the all-owners subjects too.
      expect((await refusal(acme.nc, subjects.eventsAll)).name).toBe('PermissionViolationError');
      expect((await refusal(acme.nc, subjects.ownerAll('globex'))).name).toBe('PermissionViolationError');
      await acme.nc.flush();

      const ack = await jetstream(acme.nc).publish(subjects.submit('acme'), JSON.stringify({ jobId, spec: spec(20, 'acme') }), { msgID: jobId });
      expect(ack.duplicate).toBe(false);
      await eventually(() => events.some((m) => m.subject.endsWith('.JobCompleted')), 60_000, "acme's JobCompleted on its owner subject");

      const received = events.map((m) => ({ subject: m.subject, body: JSON.parse(m.string()) as { id: string; type: string; jobId: string; data: Record<string, unknown> } }));
      expect(received.map((e) => e.body.type)).toEqual(['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobStarted', 'JobCompleted']);
      for (const e of received) {
        expect(e.subject).toBe(subjects.ownerEvent('acme', jobId, e.body.type));
        expect(e.body.jobId).toBe(jobId);
      }
      expect(received[0].body.data).toMatchObject({ owner: 'acme' });
      expect(received.at(-1)!.body.data).toMatchObject({ exitCode: 0 });
      // The event id is the message id, as on jobline.evt.
      expect(events.map((m) => m.headers?.get('Nats-Msg-Id'))).toEqual(received.map((e) => e.body.id));

      // Every chunk is sent before the finished report, so before JobCompleted was stored and relayed.
      const chunks = logs.map((m) => decodeLogChunk(m)).filter((c): c is LogChunk => c !== null);
      expect(chunks).toHaveLength(logs.length);
      const text = (stream: string) => chunks.filter((c) => c.stream === stream).map((c) => Buffer.from(c.data).toString()).join('');
      expect(text('stdout')).toBe(Array.from({ length: 20 }, (_, i) => `acme-${i + 1}\n`).join(''));
      expect(text('stderr')).toBe('acme-err\n');
      expect(chunks.every((c) => c.jobId === jobId && c.attempt === 1)).toBe(true);
      expect(received.at(-1)!.body.data.logBytes).toBe(chunks.reduce((n, c) => n + c.data.length, 0));

      // globex's own job reaches globex (so its catch-all subscription does receive)...
      const globexJob = randomUUID();
      await jetstream(globex.nc).publish(subjects.submit('globex'), JSON.stringify({ jobId: globexJob, spec: spec(2, 'globex') }), { msgID: globexJob });
      await eventually(() => globexOwn.some((m) => m.subject === subjects.ownerEvent('globex', globexJob, 'JobCompleted')), 60_000, "globex's JobCompleted");
      await globex.nc.flush();
      // ...and nothing of acme's ever did: no subject, header or payload naming acme's job or output.
      const leaked = [...globexOwn, ...globexInbox].filter((m) => m.subject.includes(jobId) || m.subject.includes('.acme.') || m.string().includes(jobId) || m.string().includes('acme-'));
      expect(leaked.map((m) => m.subject)).toEqual([]);
      expect(globexOwn.every((m) => m.subject.startsWith('jobline.owner.globex.'))).toBe(true);
      expect(globexOwn.some((m) => m.subject === subjects.ownerLogs('globex', globexJob))).toBe(true);
      // acme saw none of globex's either.
      expect([...events, ...logs].some((m) => m.subject.includes(globexJob))).toBe(false);

      // globex cannot submit as, or cancel the jobs of, acme: the publish is refused.
      globex.nc.publish(subjects.cancel('acme'), JSON.stringify({ jobId }));
      await eventually(
        () => globex.statuses.some((s) => s.type === 'error' && /Publish to "jobline\.cmd\.acme\.cancel"/.test(String((s as { error?: Error }).error?.message))),
        20_000,
        'the publish permissions violation',
      );
      // Nor pose as an admin: jobline.adm.> (an admin's cancel, purge, re-run of any job) is the services' alone.
      globex.nc.publish(subjects.adminCommand('globex', 'cancel'), JSON.stringify({ jobId }));
      await eventually(
        () => globex.statuses.some((s) => s.type === 'error' && /Publish to "jobline\.adm\.globex\.cancel"/.test(String((s as { error?: Error }).error?.message))),
        20_000,
        'the publish permissions violation on jobline.adm',
      );
    } finally {
      await acme.nc.close();
      await globex.nc.close();
    }
  }, 180_000);
});
