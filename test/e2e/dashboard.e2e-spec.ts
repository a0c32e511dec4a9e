import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type ConsoleMessage, type Page } from 'playwright-core';
import { startDevStack, sha256Hex, type DevStack } from '../../apps/cli/src/dev-stack';
import { DASHBOARD_CSP } from '../../apps/api/src/web/dashboard.controller';
import { defaultDashboardDir } from '../../apps/api/src/web/dashboard-assets';
import { eventually, tempDir, type TempDir } from '../../libs/testing/src';
import WebSocket from 'ws';
import type { z } from 'zod';
import { CallerSchema, ExecutorsSchema, JobEventsSchema, JobStatsSchema, JobTimelineSchema, JobViewSchema, JobsPageSchema, ProblemSchema } from '../../apps/api/src/openapi/rest-schemas';
import { RestClient, quietLogger } from './support';

/**
 * The dashboard in a real browser: Debian's chromium driven by playwright-core (never a
 * browser download), against the whole dev stack on free ports. Each view is written as a
 * screenshot to .tmp/dashboard-screenshots/.
 */

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOTS = join(__dirname, '../../.tmp/dashboard-screenshots');
const BOB_TOKEN = 'bob-dashboard-token-0123456789';
const DASHBOARD_DIR = defaultDashboardDir();

const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`dashboard e2e skipped: ${CHROMIUM} is missing (apt-get install chromium; scripts/system-deps.sh installs it)`);
const describeBrowser = haveChromium ? describe : describe.skip;

/** Console errors and uncaught exceptions of a page (a CSP violation is a console error). */
function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (m: ConsoleMessage) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  return errors;
}

/** Every visible form control's accessible name: a <label for>, a wrapping label or aria-label. Unlabelled ones are returned. */
const UNLABELLED = `[...document.querySelectorAll('input, select, textarea')]
  .filter((el) => el.type !== 'hidden' && el.offsetParent !== null)
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
  .map((el) => el.outerHTML)`;

/** A link of the main navigation. */
const nav = (page: Page, name: string) => page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true });

describeBrowser('dashboard in headless Chromium', () => {
  let dir: TempDir;
  let stack: DevStack;
  let browser: Browser;
  let base: string;
  let rest: RestClient;

  beforeAll(async () => {
    if (!existsSync(join(DASHBOARD_DIR, 'index.html'))) throw new Error(`the dashboard is not built in ${DASHBOARD_DIR}: run \`npm run build\` first (npm test does)`);
    mkdirSync(SCREENSHOTS, { recursive: true });
    dir = tempDir('jobline-dashboard-');
    stack = await startDevStack({
      dataDir: dir.path,
      apiPort: 0,
      executorCapacity: 2,
      graceMs: 1000,
      packager: false,
      extraTokens: [{ sha256: sha256Hex(BOB_TOKEN), owner: 'bob', admin: false }],
      logger: quietLogger,
    });
    base = stack.apiUrl!;
    rest = new RestClient(base, stack.token);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // Playwright gives each launch a fresh, empty profile (its own --user-data-dir).
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
    });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
    dir?.remove();
  });

  async function signedIn(token: string): Promise<{ context: BrowserContext; page: Page; errors: string[] }> {
    const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
    const page = await context.newPage();
    const errors = watchErrors(page);
    await signIn(page, `${base}/`, token);
    return { context, page, errors };
  }

  async function signIn(page: Page, url: string, token: string): Promise<void> {
    await page.goto(url);
    await page.getByLabel('API token').fill(token);
    await page.getByLabel('API token').press('Enter');
    await page.getByRole('heading', { level: 1 }).and(page.locator(':focus')).waitFor();
  }

  it('serves the built dashboard at / with a self-only CSP and a cache policy, and every client route', async () => {
    const index = await fetch(`${base}/`);
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(index.headers.get('content-security-policy')).toBe(DASHBOARD_CSP);
    expect(DASHBOARD_CSP).toContain("default-src 'self'");
    expect(DASHBOARD_CSP).not.toMatch(/unsafe|https?:|\*/);
    expect(index.headers.get('cache-control')).toBe('no-cache');
    const html = await index.text();
    const script = /<script type="module" crossorigin src="(\/assets\/[^"]+\.js)">/.exec(html)?.[1];
    expect(script).toBeDefined();
    expect(html).not.toMatch(/<script>(?!<\/script>)|<script type="module">/);

    const asset = await fetch(`${base}${script}`, { headers: { 'accept-encoding': 'gzip' } });
    expect(asset.status).toBe(200);
    expect(asset.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(asset.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    const again = await fetch(`${base}${script}`, { headers: { 'if-none-match': asset.headers.get('etag')! } });
    expect(again.status).toBe(304);

    for (const route of ['/jobs', '/jobs/00000000-0000-4000-8000-000000000000', '/submit', '/executors', '/reference']) {
      const r = await fetch(`${base}${route}`);
      expect({ route, status: r.status, html: (await r.text()) === html }).toEqual({ route, status: 200, html: true });
    }
    expect((await fetch(`${base}/assets/nope.js`)).status).toBe(404);
    expect((await fetch(`${base}/assets/..%2F..%2Fpackage.json`)).status).toBe(404);
    // The API itself still wants credentials.
    expect((await fetch(`${base}/v1/jobs`)).status).toBe(401);
  });

  it('signs in, submits from the form, shows the job live in the list, streams its log, cancels it and shows the history', async () => {
    const { context, page, errors } = await signedIn(stack.token);
    await page.screenshot({ path: join(SCREENSHOTS, '01-overview.png'), fullPage: true });
    await expect(page.getByTestId('who').textContent()).resolves.toBe('dev (admin)');
    // A new view moves the focus to its heading (screen readers announce it).
    expect(await page.evaluate('document.activeElement.textContent')).toBe('Overview (all owners)');
    // Keyboard: back from the heading through the header in reverse order, to the skip link first of all.
    const focusOrder: string[] = [];
    for (let i = 0; i < 7; i++) {
      await page.keyboard.press('Shift+Tab');
      focusOrder.push(await page.evaluate('document.activeElement.textContent.trim()'));
    }
    expect(focusOrder).toEqual(['Sign out', 'API reference', 'Executors', 'Submit', 'Jobs', 'Overview', 'Skip to content']);
    // The skip link takes the keyboard past the header, into the view.
    await page.keyboard.press('Enter');
    await page.keyboard.press('Tab');
    expect(await page.evaluate('document.activeElement.closest("main") !== null')).toBe(true);

    // A second tab keeps the jobs list open: the job must appear there by itself. (The token is per tab: it signs in too.)
    const listPage = await context.newPage();
    const listErrors = watchErrors(listPage);
    await signIn(listPage, `${base}/jobs`, stack.token);
    await listPage.getByText('No jobs match.').waitFor();
    await eventually(async () => (await listPage.locator('.conn-open').count()) === 1, 15_000, 'the list page’s WebSocket to open');

    await nav(page, 'Submit').click();
    await page.getByRole('heading', { level: 1, name: 'Submit a job' }).waitFor();
    expect(await page.evaluate(UNLABELLED)).toEqual([]);
    await page
      .getByLabel('Script', { exact: true })
      .fill('i=0; while [ $i -lt 600 ]; do i=$((i+1)); echo "line $i"; echo "err $i" >&2; sleep 0.1; done');
    await page.getByLabel('Priority').selectOption('high');
    await page.getByLabel('Timeout (seconds)').fill('120');
    await page.screenshot({ path: join(SCREENSHOTS, '02-submit.png'), fullPage: true });
    await page.getByRole('button', { name: 'Submit', exact: true }).click();
    await page.waitForURL(/\/jobs\/[0-9a-f-]{36}$/);
    const jobId = /\/jobs\/([0-9a-f-]{36})$/.exec(page.url())![1];

    // The list, untouched since it loaded, shows the job.
    const row = listPage.locator(`tr[data-job-id="${jobId}"]`);
    await row.waitFor({ timeout: 15_000 });
    await row.getByText('running').waitFor({ timeout: 15_000 });
    await listPage.screenshot({ path: join(SCREENSHOTS, '03-jobs-live.png'), fullPage: true });

    // Open it from the list: its log streams in while it runs, stdout and stderr told apart.
    await row.getByRole('link').click();
    await listPage.waitForURL(`${base}/jobs/${jobId}`);
    const log = listPage.getByTestId('log');
    await log.getByText('line 5', { exact: true }).waitFor({ timeout: 20_000 });
    const seenEarly = await log.locator('.line').count();
    await log.getByText('line 20', { exact: true }).waitFor({ timeout: 20_000 });
    expect(await log.locator('.line').count()).toBeGreaterThan(seenEarly);
    expect((await rest.job(jobId)).status).toBe('running');
    await expect(log.locator('.line.stderr').first().textContent()).resolves.toMatch(/^err \d+\n$/);
    await expect(log.locator('.line.stdout').first().textContent()).resolves.toBe('line 1\n');
    await listPage.getByRole('heading', { level: 1 }).getByText('running').waitFor();

    // Search narrows the lines.
    await listPage.getByLabel('Search the log').fill('err 1');
    await eventually(async () => {
      const texts = await log.locator('.line').allTextContents();
      return texts.length > 0 && texts.every((t) => t.includes('err 1'));
    }, 10_000, 'the search to narrow the log');
    await listPage.getByLabel('Search the log').fill('');

    // Cancel it while it runs.
    await listPage.getByRole('button', { name: 'Cancel' }).click();
    await listPage.getByRole('heading', { level: 1 }).getByText('cancelled').waitFor({ timeout: 20_000 });
    const history = listPage.getByTestId('history');
    await history.locator('li[data-type="JobCancelled"]').waitFor({ timeout: 10_000 });
    const types = await history.locator('li').evaluateAll((els) => els.map((e) => e.getAttribute('data-type')));
    expect(types).toEqual(expect.arrayContaining(['JobSubmitted', 'JobQueued', 'JobDispatched', 'JobStarted', 'JobCancelRequested', 'JobCancelled']));
    expect(types[0]).toBe('JobSubmitted');
    await expect(history.locator('li[data-type="JobCancelRequested"]').textContent()).resolves.toMatch(/by dev/);
    await expect(listPage.getByTestId('detail-executor').textContent()).resolves.toBe('local');
    await listPage.screenshot({ path: join(SCREENSHOTS, '04-job.png'), fullPage: true });

    // The job as it stood when JobSubmitted was recorded.
    const recorded = ((await rest.events(jobId))[0] as unknown as { occurredAt: string }).occurredAt;
    await listPage.goto(`${base}/jobs/${jobId}?at=${encodeURIComponent(recorded)}`);
    await listPage.getByText(/^as of /).waitFor();
    await expect(listPage.getByRole('heading', { level: 1 }).locator('.badge').textContent()).resolves.toMatch(/^(pending|queued)$/);

    // Submit again: the same spec as a new job.
    await page.getByRole('button', { name: 'Submit again' }).click();
    await page.waitForURL((u) => /\/jobs\/[0-9a-f-]{36}$/.test(u.pathname) && !u.pathname.endsWith(jobId));
    const againId = /\/jobs\/([0-9a-f-]{36})$/.exec(page.url())![1];
    expect((await rest.job(againId)).spec).toEqual((await rest.job(jobId)).spec);
    await rest.request(`/v1/jobs/${againId}/cancel`, { method: 'POST', body: '{}' });

    // Re-run: the same spec and bundle as a new job that names the original.
    await listPage.goto(`${base}/jobs/${jobId}`);
    await listPage.getByRole('button', { name: 'Re-run' }).click();
    await listPage.waitForURL((u) => /\/jobs\/[0-9a-f-]{36}$/.test(u.pathname) && !u.pathname.endsWith(jobId));
    const rerunId = /\/jobs\/([0-9a-f-]{36})$/.exec(listPage.url())![1];
    await expect(listPage.getByTestId('detail-re-run-of').textContent()).resolves.toBe(jobId);
    expect((await rest.job(rerunId)).rerunOf).toBe(jobId);
    await rest.request(`/v1/jobs/${rerunId}/cancel`, { method: 'POST', body: '{}' });

    await nav(page, 'Executors').click();
    await page.locator('tr[data-executor="local"]').waitFor();
    await page.screenshot({ path: join(SCREENSHOTS, '05-executors.png'), fullPage: true });

    await nav(page, 'Overview').click();
    await eventually(async () => Number(await page.getByTestId('running').textContent()) >= 0, 10_000, 'the overview counts');
    await page.locator('figure.chart svg').waitFor();
    await page.screenshot({ path: join(SCREENSHOTS, '06-overview-after.png'), fullPage: true });

    await nav(page, 'Jobs').click();
    await page.locator(`tr[data-job-id="${jobId}"]`).waitFor();
    expect(await page.evaluate(UNLABELLED)).toEqual([]);
    await page.getByTestId('count-cancelled').filter({ hasText: /^[1-9]/ }).waitFor({ timeout: 10_000 });

    await nav(page, 'API reference').click();
    await page.getByRole('heading', { level: 2, name: /GET\s+\/v1\/jobs$/ }).waitFor();
    await page.screenshot({ path: join(SCREENSHOTS, '07-reference.png'), fullPage: false });

    expect([...errors, ...listErrors]).toEqual([]);
    await context.close();
  }, 180_000);

  it('shows a second owner none of the first owner’s jobs, live or listed', async () => {
    const mine = await rest.submit({ command: 'echo from dev' });
    await rest.finished(mine.id);
    const { context, page, errors } = await signedIn(BOB_TOKEN);
    await expect(page.getByTestId('who').textContent()).resolves.toBe('bob');
    await nav(page, 'Jobs').click();
    await page.getByText('No jobs match.').waitFor();
    await eventually(async () => (await page.locator('.conn-open').count()) === 1, 15_000, 'the WebSocket to open');
    // No owner filter for a non-admin.
    expect(await page.getByLabel('Owner').count()).toBe(0);

    // A job of dev's that runs while bob watches does not show up; bob's own does.
    const devJob = await rest.submit({ command: 'echo dev again' });
    const bob = new RestClient(base, BOB_TOKEN);
    const bobJob = await bob.submit({ command: 'echo from bob' });
    await page.locator(`tr[data-job-id="${bobJob.id}"]`).waitFor({ timeout: 15_000 });
    await rest.finished(devJob.id);
    await bob.finished(bobJob.id);
    await page.locator(`tr[data-job-id="${bobJob.id}"]`).getByText('succeeded').waitFor({ timeout: 15_000 });
    expect(await page.locator('tbody tr').count()).toBe(1);
    await page.getByTestId('count-succeeded').filter({ hasText: /^1$/ }).waitFor({ timeout: 10_000 });
    await page.screenshot({ path: join(SCREENSHOTS, '08-second-owner.png'), fullPage: true });

    // dev's job by its URL is the same "not found" as a job that does not exist.
    await page.goto(`${base}/jobs/${mine.id}`);
    await page.getByRole('heading', { level: 1, name: 'Job not found' }).waitFor();
    expect(errors.filter((e) => !/404/.test(e))).toEqual([]);
    await context.close();
  }, 120_000);

  it('answers the REST additions the dashboard uses as the OpenAPI document says', async () => {
    const get = async <S extends z.ZodType>(path: string, schema: S, token = stack.token): Promise<z.output<S>> => {
      const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
      const body: unknown = await res.json();
      expect({ path, status: res.status }).toEqual({ path, status: 200 });
      const parsed = schema.safeParse(body);
      expect({ path, issues: parsed.success ? [] : parsed.error.issues }).toEqual({ path, issues: [] });
      return parsed.data as z.output<S>;
    };
    const before = new Date().toISOString();
    const job = await rest.submit({ command: 'echo caused', priority: 'low' }, { 'X-Request-Id': 'dashboard-e2e-1' });
    await rest.finished(job.id);

    expect(await get('/v1/me', CallerSchema)).toEqual({ owner: 'dev', admin: true });
    expect(await get('/v1/me', CallerSchema, BOB_TOKEN)).toEqual({ owner: 'bob', admin: false });
    const view = await get(`/v1/jobs/${job.id}`, JobViewSchema);
    expect(view.executor).toBe('local');
    const byExecutor = await get(`/v1/jobs?executor=local&submittedFrom=${encodeURIComponent(before)}`, JobsPageSchema);
    expect(byExecutor.items.map((j) => j.id)).toEqual([job.id]);
    expect((await get('/v1/jobs?executor=nowhere', JobsPageSchema)).total).toBe(0);
    expect((await get(`/v1/jobs?submittedTo=${encodeURIComponent(before)}&priority=low`, JobsPageSchema)).items.map((j) => j.id)).not.toContain(job.id);
    const events = await get(`/v1/jobs/${job.id}/events`, JobEventsSchema);
    const started = events.items.find((e) => e.type === 'JobStarted')!;
    const dispatched = events.items.find((e) => e.type === 'JobDispatched')!;
    // The submission names its request; the start, the dispatch it answers; every event, the job's submission.
    expect(events.items[0]).toMatchObject({ type: 'JobSubmitted', causationId: 'dashboard-e2e-1', actor: 'dev' });
    expect(started.causationId).toBe(dispatched.id);
    for (const e of events.items) expect(e.correlationId).toBe(job.id);
    await get('/v1/stats', JobStatsSchema);
    const timeline = await get('/v1/stats/timeline?bucket=60', JobTimelineSchema);
    expect(timeline.buckets).toHaveLength(60);
    expect(timeline.buckets.reduce((n, b) => n + b.succeeded, 0)).toBeGreaterThanOrEqual(1);
    const executors = await get('/v1/executors', ExecutorsSchema);
    expect(executors.items.find((x) => x.id === 'local')!.heartbeatAgeMs).toBeLessThan(10_000);

    // Bad input: problem documents, as documented.
    for (const [path, status] of [
      ['/v1/stats/timeline?bucket=1&from=2020-01-01T00:00:00Z', 400],
      ['/v1/jobs?executor=a.b', 400],
      ['/v1/jobs?submittedFrom=yesterday', 400],
      [`/v1/jobs/${job.id}/bundle/manifest`, 404],
    ] as const) {
      const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${stack.token}` } });
      expect({ path, status: res.status, type: res.headers.get('content-type') }).toEqual({ path, status, type: 'application/problem+json' });
      expect(ProblemSchema.safeParse(await res.json()).success).toBe(true);
    }
    expect((await fetch(`${base}/v1/stats/timeline?owner=dev`, { headers: { authorization: `Bearer ${BOB_TOKEN}` } })).status).toBe(403);

    // The WebSocket takes the token as a subprotocol (what the dashboard sends) and answers with jobline.v1; ?token= still works.
    const wsUrl = base.replace(/^http/, 'ws') + '/v1/ws';
    const open = (url: string, protocols: string[]) =>
      new Promise<WebSocket>((resolve, reject) => {
        const ws = new WebSocket(url, protocols);
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
      });
    const viaProtocol = await open(wsUrl, ['jobline.v1', `jobline.bearer.${Buffer.from(stack.token).toString('base64url')}`]);
    expect(viaProtocol.protocol).toBe('jobline.v1');
    viaProtocol.close();
    const viaQuery = await open(`${wsUrl}?token=${encodeURIComponent(stack.token)}`, []);
    viaQuery.close();
    await expect(open(wsUrl, ['jobline.v1', `jobline.bearer.${Buffer.from('wrong-token').toString('base64url')}`])).rejects.toThrow(/401/);
  });
});
