import { useEffect, useState } from 'preact/hooks';
import { api, problemText, type Caller, type Stats, type Timeline } from '../api';
import { ThroughputChart } from '../components/chart';
import { Notice, PageTitle, useDebounced, useInterval } from '../components/common';
import { failureRate } from '../lib/format';
import { live } from '../live';
import { Link } from '../router';

const WINDOWS = [
  { label: 'Last hour', bucketSeconds: 60, buckets: 60 },
  { label: 'Last 6 hours', bucketSeconds: 300, buckets: 72 },
  { label: 'Last 24 hours', bucketSeconds: 1800, buckets: 48 },
  { label: 'Last 7 days', bucketSeconds: 3 * 3600, buckets: 56 },
];

export function OverviewView({ caller }: { caller: Caller }) {
  const [w, setW] = useState(0);
  const [stats, setStats] = useState<Stats | null>(null);
  const [timeline, setTimeline] = useState<Timeline | null>(null);
  const [error, setError] = useState<unknown>(null);
  const win = WINDOWS[w];
  const load = () => {
    api.stats().then(setStats, setError);
    api.timeline(win.bucketSeconds, win.buckets).then((t) => (setTimeline(t), setError(null)), setError);
  };
  useInterval(load, 10_000, [w]);
  const reload = useDebounced(load, 1000);
  useEffect(() => live.watch(() => reload()), [w]);

  const totals = timeline?.buckets.reduce(
    (a, b) => ({ submitted: a.submitted + b.submitted, succeeded: a.succeeded + b.succeeded, failed: a.failed + b.failed, cancelled: a.cancelled + b.cancelled, timedOut: a.timedOut + b.timedOut }),
    { submitted: 0, succeeded: 0, failed: 0, cancelled: 0, timedOut: 0 },
  );
  const rate = totals ? failureRate(totals) : null;
  const queued = stats ? (stats.byStatus.pending ?? 0) + (stats.byStatus.queued ?? 0) : null;
  return (
    <section>
      <PageTitle title="Overview">Overview{caller.admin ? ' (all owners)' : ''}</PageTitle>
      {error !== null && <Notice kind="error">{problemText(error)}</Notice>}
      <div class="cards">
        <Card label="Queue depth" value={queued} href="/jobs?status=pending,queued" testid="queue-depth" />
        <Card label="Running" value={stats?.byStatus.running ?? null} href="/jobs?status=running" testid="running" />
        <Card label={`Finished (${win.label.toLowerCase()})`} value={totals ? totals.succeeded + totals.failed + totals.cancelled + totals.timedOut : null} />
        <Card label={`Failure rate (${win.label.toLowerCase()})`} value={rate === null ? (totals ? '–' : null) : `${Math.round(rate * 100)}%`} />
        <Card label="All jobs" value={stats?.total ?? null} href="/jobs" />
      </div>
      <div class="field inline">
        <label for="window">Time window</label>
        <select id="window" value={String(w)} onChange={(e) => setW(Number((e.target as HTMLSelectElement).value))}>
          {WINDOWS.map((x, i) => (
            <option key={x.label} value={String(i)}>
              {x.label}
            </option>
          ))}
        </select>
      </div>
      <h2>Throughput and failure rate</h2>
      {timeline && <ThroughputChart buckets={timeline.buckets} bucketSeconds={timeline.bucketSeconds} />}
    </section>
  );
}

function Card({ label, value, href, testid }: { label: string; value: number | string | null; href?: string; testid?: string }) {
  const body = (
    <>
      <span class="card-value" data-testid={testid}>
        {value ?? '…'}
      </span>
      <span class="card-label">{label}</span>
    </>
  );
  return <div class="card">{href ? <Link href={href}>{body}</Link> : body}</div>;
}
