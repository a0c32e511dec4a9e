import { useState } from 'preact/hooks';
import type { TimelineBucket } from '../api';
import { failureRate } from '../lib/format';

/**
 * Throughput (jobs finished per bucket, stacked by outcome, with submissions as a line)
 * and failure rate, as inline SVG (no library, nothing but this origin under the CSP).
 * The same numbers are available as a table for screen readers and keyboard users.
 */
export function ThroughputChart({ buckets, bucketSeconds }: { buckets: TimelineBucket[]; bucketSeconds: number }) {
  const [asTable, setAsTable] = useState(false);
  const W = 720;
  const H = 220;
  const pad = { l: 40, r: 44, t: 10, b: 24 };
  const n = Math.max(1, buckets.length);
  const finished = (b: TimelineBucket) => b.succeeded + b.failed + b.cancelled + b.timedOut;
  const max = Math.max(1, ...buckets.map((b) => Math.max(finished(b), b.submitted)));
  const x = (i: number) => pad.l + (i * (W - pad.l - pad.r)) / n;
  const bw = Math.max(1, (W - pad.l - pad.r) / n - 1);
  const y = (v: number) => H - pad.b - (v * (H - pad.t - pad.b)) / max;
  const yRate = (r: number) => H - pad.b - r * (H - pad.t - pad.b);
  const label = (iso: string) => {
    const d = new Date(iso);
    const hm = `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
    return bucketSeconds >= 3600 ? `${d.getMonth() + 1}/${d.getDate()} ${hm}` : hm;
  };
  const totals = buckets.reduce((a, b) => ({ submitted: a.submitted + b.submitted, finished: a.finished + finished(b), failed: a.failed + b.failed + b.timedOut }), { submitted: 0, finished: 0, failed: 0 });
  const summary = `Over ${buckets.length} buckets of ${bucketSeconds} s: ${totals.submitted} submitted, ${totals.finished} finished, ${totals.failed} failed or timed out.`;
  const rateLine = buckets
    .map((b, i) => [i, failureRate(b)] as const)
    .filter(([, r]) => r !== null)
    .map(([i, r]) => `${x(i) + bw / 2},${yRate(r!)}`)
    .join(' ');
  const submittedLine = buckets.map((b, i) => `${x(i) + bw / 2},${y(b.submitted)}`).join(' ');
  const ticks = [0, Math.round(max / 2), max];
  const every = Math.max(1, Math.ceil(n / 8));
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={summary}>
        {ticks.map((t) => (
          <g key={t}>
            <line class="grid" x1={pad.l} x2={W - pad.r} y1={y(t)} y2={y(t)} />
            <text class="axis" x={pad.l - 6} y={y(t) + 4} text-anchor="end">
              {t}
            </text>
          </g>
        ))}
        {[0, 0.5, 1].map((r) => (
          <text key={r} class="axis rate" x={W - pad.r + 6} y={yRate(r) + 4}>
            {Math.round(r * 100)}%
          </text>
        ))}
        {buckets.map((b, i) => {
          let base = 0;
          return (
            <g key={b.start}>
              {(['succeeded', 'cancelled', 'failed', 'timedOut'] as const).map((k) => {
                const v = b[k];
                if (!v) return null;
                const top = y(base + v);
                const h = y(base) - top;
                base += v;
                return <rect key={k} class={`bar bar-${k}`} x={x(i)} y={top} width={bw} height={h} />;
              })}
              {i % every === 0 && (
                <text class="axis" x={x(i)} y={H - 6}>
                  {label(b.start)}
                </text>
              )}
            </g>
          );
        })}
        <polyline class="line-submitted" points={submittedLine} />
        {rateLine && <polyline class="line-rate" points={rateLine} />}
      </svg>
      <figcaption>
        <span class="legend bar-succeeded">succeeded</span> <span class="legend bar-failed">failed</span> <span class="legend bar-timedOut">timed out</span>{' '}
        <span class="legend bar-cancelled">cancelled</span> <span class="legend line-submitted">submitted</span> <span class="legend line-rate">failure rate (right axis)</span>
        <button type="button" class="link-button" aria-expanded={asTable} onClick={() => setAsTable(!asTable)}>
          {asTable ? 'Hide the table' : 'Show as a table'}
        </button>
      </figcaption>
      {asTable && (
        <table class="data">
          <caption>{summary}</caption>
          <thead>
            <tr>
              <th scope="col">From</th>
              <th scope="col">Submitted</th>
              <th scope="col">Succeeded</th>
              <th scope="col">Failed</th>
              <th scope="col">Timed out</th>
              <th scope="col">Cancelled</th>
              <th scope="col">Failure rate</th>
            </tr>
          </thead>
          <tbody>
            {buckets.map((b) => {
              const r = failureRate(b);
              return (
                <tr key={b.start}>
                  <td>{label(b.start)}</td>
                  <td>{b.submitted}</td>
                  <td>{b.succeeded}</td>
                  <td>{b.failed}</td>
                  <td>{b.timedOut}</td>
                  <td>{b.cancelled}</td>
                  <td>{r === null ? '–' : `${Math.round(r * 100)}%`}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </figure>
  );
}
