import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, problemText, type Caller, type JobsPage, type Stats } from '../api';
import { Notice, PageTitle, StatusBadge, useDebounced } from '../components/common';
import { commandText, duration, statusLabel, time } from '../lib/format';
import { ORDERS, PRIORITIES, STATUSES, filtersFromSearch, filtersToSearch, fromLocalInput, mayMatch, toLocalInput, type JobFilters } from '../lib/jobs-query';
import { live } from '../live';
import { Link, navigate } from '../router';

const ORDER_LABELS: Record<(typeof ORDERS)[number], string> = {
  '-submittedAt': 'Newest first',
  submittedAt: 'Oldest first',
  '-priority': 'Highest priority first',
  priority: 'Lowest priority first',
};

/** The jobs list: filters in the URL, paged by cursor, kept current by the WebSocket watch. */
export function JobsView({ caller, search }: { caller: Caller; search: string }) {
  const filters = useMemo(() => filtersFromSearch(search), [search]);
  const [page, setPage] = useState<JobsPage | null>(null);
  const [stats, setStats] = useState<Stats | null>(null);
  const [error, setError] = useState<unknown>(null);
  // Cursors of the pages before this one, to go back; the current page's own cursor last.
  const [paging, setPaging] = useState<{ search: string; cursors: string[] }>({ search, cursors: [] });
  const cursors = paging.search === search ? paging.cursors : [];
  const setCursors = (c: string[]) => setPaging({ search, cursors: c });
  const cursor = cursors[cursors.length - 1];
  const [fresh, setFresh] = useState<Set<string>>(new Set());

  const load = () => {
    api.jobs(filters, cursor).then(
      (p) => {
        setPage(p);
        setError(null);
      },
      setError,
    );
    api.stats(caller.admin ? filters.owner || undefined : undefined).then(setStats, () => undefined);
  };
  useEffect(load, [filters, cursor]);
  const reload = useDebounced(load, 300);

  useEffect(() => {
    const offWatch = live.watch((f) => {
      setPage((p) => {
        if (!p) return p;
        const i = p.items.findIndex((j) => j.id === f.jobId);
        if (i === -1) {
          // A job not on this page: on the first page it may be new, so fetch the page again.
          if (!cursor && mayMatch(filters, f)) {
            setFresh((s) => new Set(s).add(f.jobId));
            reload();
          }
          return p;
        }
        const items = p.items.slice();
        items[i] = { ...items[i], status: f.status, attempt: f.attempt, exitCode: f.exitCode ?? items[i].exitCode, reason: f.reason ?? items[i].reason };
        return { ...p, items };
      });
      // Details (executor, times) and counts come from the api, after the burst.
      reload();
    });
    const offState = live.onState((s) => s === 'open' && reload());
    return () => {
      offWatch();
      offState();
    };
  }, [filters, cursor]);

  const update = (patch: Partial<JobFilters>) => navigate(`/jobs${filtersToSearch({ ...filters, ...patch })}`, true);
  const toggle = <T extends string>(list: T[], v: T) => (list.includes(v) ? list.filter((x) => x !== v) : [...list, v]);

  return (
    <section>
      <PageTitle title="Jobs">Jobs</PageTitle>
      {stats && (
        <div class="counts" role="group" aria-label="Jobs by status (select to filter)">
          {STATUSES.map((s) => (
            <button
              type="button"
              key={s}
              class={`count status-${s}`}
              aria-pressed={filters.status.length === 1 && filters.status[0] === s}
              onClick={() => update({ status: filters.status.length === 1 && filters.status[0] === s ? [] : [s] })}
            >
              <span class="count-n" data-testid={`count-${s}`}>
                {stats.byStatus[s] ?? 0}
              </span>{' '}
              {statusLabel(s)}
            </button>
          ))}
        </div>
      )}
      <form class="filters" aria-label="Filters" onSubmit={(e) => e.preventDefault()}>
        <fieldset>
          <legend>Status</legend>
          {STATUSES.map((s) => (
            <label key={s} class="check">
              <input type="checkbox" name="status" value={s} checked={filters.status.includes(s)} onChange={() => update({ status: toggle(filters.status, s) })} /> {statusLabel(s)}
            </label>
          ))}
        </fieldset>
        <fieldset>
          <legend>Priority</legend>
          {PRIORITIES.map((p) => (
            <label key={p} class="check">
              <input type="checkbox" name="priority" value={p} checked={filters.priority.includes(p)} onChange={() => update({ priority: toggle(filters.priority, p) })} /> {p}
            </label>
          ))}
        </fieldset>
        <div class="filter-row">
          {caller.admin && (
            <div class="field">
              <label for="f-owner">Owner</label>
              <input id="f-owner" name="owner" type="text" pattern="[A-Za-z0-9_\-]{1,64}" value={filters.owner} placeholder="everyone" onChange={(e) => update({ owner: (e.target as HTMLInputElement).value.trim() })} />
            </div>
          )}
          <div class="field">
            <label for="f-executor">Executor</label>
            <input id="f-executor" name="executor" type="text" pattern="[A-Za-z0-9_\-]{1,64}" value={filters.executor} placeholder="any" onChange={(e) => update({ executor: (e.target as HTMLInputElement).value.trim() })} />
          </div>
          <div class="field">
            <label for="f-from">Submitted from</label>
            <input id="f-from" name="from" type="datetime-local" value={toLocalInput(filters.from)} onChange={(e) => update({ from: fromLocalInput((e.target as HTMLInputElement).value) })} />
          </div>
          <div class="field">
            <label for="f-to">Submitted before</label>
            <input id="f-to" name="to" type="datetime-local" value={toLocalInput(filters.to)} onChange={(e) => update({ to: fromLocalInput((e.target as HTMLInputElement).value) })} />
          </div>
          <div class="field">
            <label for="f-order">Sort</label>
            <select id="f-order" name="order" value={filters.order} onChange={(e) => update({ order: (e.target as HTMLSelectElement).value as JobFilters['order'] })}>
              {ORDERS.map((o) => (
                <option key={o} value={o}>
                  {ORDER_LABELS[o]}
                </option>
              ))}
            </select>
          </div>
          <div class="field">
            <label for="f-limit">Per page</label>
            <select id="f-limit" name="limit" value={String(filters.limit)} onChange={(e) => update({ limit: Number((e.target as HTMLSelectElement).value) })}>
              {[10, 20, 50, 100].map((n) => (
                <option key={n} value={String(n)}>
                  {n}
                </option>
              ))}
            </select>
          </div>
          <button type="button" class="secondary" onClick={() => navigate('/jobs', true)}>
            Clear filters
          </button>
        </div>
      </form>
      {error !== null && <Notice kind="error">{problemText(error)}</Notice>}
      {page && (
        <>
          <p class="summary" role="status">
            {page.total === 0 ? 'No jobs match.' : `${page.total} job${page.total === 1 ? '' : 's'} match${page.total === 1 ? 'es' : ''}.`}
          </p>
          {page.items.length > 0 && (
            <table class="jobs data">
              <caption class="visually-hidden">Jobs, {ORDER_LABELS[filters.order].toLowerCase()}</caption>
              <thead>
                <tr>
                  <th scope="col">Job</th>
                  <th scope="col">Command</th>
                  {caller.admin && <th scope="col">Owner</th>}
                  <th scope="col">Status</th>
                  <th scope="col">Priority</th>
                  <th scope="col">Executor</th>
                  <th scope="col">Submitted</th>
                  <th scope="col">Ran for</th>
                  <th scope="col">Exit</th>
                </tr>
              </thead>
              <tbody>
                {page.items.map((j) => (
                  <tr key={j.id} data-job-id={j.id} class={fresh.has(j.id) ? 'fresh' : undefined}>
                    <td>
                      <Link href={`/jobs/${j.id}`} class="mono">
                        {j.id.slice(0, 8)}
                      </Link>
                    </td>
                    <td class="command" title={commandText(j.spec)}>
                      {commandText(j.spec)}
                    </td>
                    {caller.admin && <td>{j.owner}</td>}
                    <td>
                      <StatusBadge status={j.status} />
                    </td>
                    <td>{j.priority}</td>
                    <td>{j.executor ?? '–'}</td>
                    <td>{time(j.submittedAt)}</td>
                    <td>{j.startedAt ? duration((j.finishedAt ? Date.parse(j.finishedAt) : Date.now()) - Date.parse(j.startedAt)) : '–'}</td>
                    <td>{j.exitCode ?? (j.signal ? j.signal : '–')}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <nav class="pager" aria-label="Pages">
            <button type="button" class="secondary" disabled={cursors.length === 0} onClick={() => setCursors(cursors.slice(0, -1))}>
              Previous page
            </button>
            <span>Page {cursors.length + 1}</span>
            <button type="button" class="secondary" disabled={!page.nextCursor} onClick={() => page.nextCursor && setCursors([...cursors, page.nextCursor])}>
              Next page
            </button>
          </nav>
        </>
      )}
    </section>
  );
}
