import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ApiError, api, problemText, type JobEvent, type JobView as Job } from '../api';
import { Notice, PageTitle, StatusBadge, useDebounced } from '../components/common';
import { bytes, commandText, duration, time } from '../lib/format';
import { fromLocalInput, toLocalInput } from '../lib/jobs-query';
import { LogBuffer, type LogStream } from '../lib/log-buffer';
import { live } from '../live';
import { Link, navigate } from '../router';

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);
/** Lines drawn at once; the search narrows them, the download has everything. */
const SHOWN_LINES = 2_000;

export function JobView({ id, search }: { id: string; search: string }) {
  const at = new URLSearchParams(search).get('at') ?? '';
  const [job, setJob] = useState<Job | null>(null);
  const [current, setCurrent] = useState<Job | null>(null);
  const [events, setEvents] = useState<JobEvent[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [message, setMessage] = useState<{ kind: 'info' | 'error'; text: string } | null>(null);

  const load = () => {
    api.job(id).then(setCurrent, setError);
    if (at) api.job(id, at).then(setJob, setError);
    api.events(id).then(setEvents, () => undefined);
  };
  useEffect(() => {
    setJob(null);
    load();
  }, [id, at]);
  useEffect(() => {
    if (!at) setJob(current);
  }, [current, at]);
  const reload = useDebounced(load, 200);
  useEffect(() => {
    const off = live.watch((f) => f.jobId === id && reload());
    const offState = live.onState((s) => s === 'open' && reload());
    return () => {
      off();
      offState();
    };
  }, [id, at]);

  if (error instanceof ApiError && error.problem.status === 404 && !job) {
    return (
      <section>
        <PageTitle title="Job not found">Job not found</PageTitle>
        <Notice kind="error">{at ? `Job ${id} did not exist yet at ${time(at)}, or it is not yours.` : `There is no job ${id} that you may see.`}</Notice>
        {at && <Link href={`/jobs/${id}`}>Show the job as it is now</Link>}
      </section>
    );
  }
  if (!job || !current) return error ? <Notice kind="error">{problemText(error)}</Notice> : <Notice>Loading…</Notice>;

  const act = async (what: 'cancel' | 'delete' | 'again' | 'rerun') => {
    setMessage(null);
    try {
      if (what === 'cancel') {
        await api.cancel(id);
        setMessage({ kind: 'info', text: 'Cancellation requested.' });
      } else if (what === 'delete') {
        if (!window.confirm(`Delete the logs and artifacts of job ${id}? Its history stays.`)) return;
        await api.purge(id);
        setMessage({ kind: 'info', text: 'Logs and artifacts deleted.' });
      } else if (what === 'rerun') {
        const again = await api.rerun(id);
        navigate(`/jobs/${again.id}`);
        return;
      } else {
        const again = await api.submit(current.spec);
        navigate(`/jobs/${again.id}`);
        return;
      }
      reload();
    } catch (err) {
      setMessage({ kind: 'error', text: problemText(err) });
    }
  };
  const finished = TERMINAL.has(current.status);

  return (
    <section class="job">
      <PageTitle title={`Job ${id.slice(0, 8)}`}>
        Job <span class="mono">{id}</span> <StatusBadge status={job.status} />
      </PageTitle>
      <div class="actions" role="group" aria-label="Actions">
        <button type="button" class="danger" disabled={finished || current.cancelRequested} onClick={() => act('cancel')}>
          {current.cancelRequested && !finished ? 'Cancelling…' : 'Cancel'}
        </button>
        <button type="button" class="secondary" disabled={!finished || current.purged} onClick={() => act('delete')}>
          Delete logs and artifacts
        </button>
        <button type="button" class="secondary" disabled={!finished || current.purged} onClick={() => act('rerun')} title="The same spec and the same bundle by digest">
          Re-run
        </button>
        <button type="button" class="secondary" onClick={() => act('again')}>
          Submit again
        </button>
      </div>
      {message && <Notice kind={message.kind}>{message.text}</Notice>}
      <AtTime id={id} at={at} />
      <Details job={job} />
      {job.steps && job.steps.length > 0 && <Steps steps={job.steps} />}
      <details class="panel">
        <summary>Spec</summary>
        <pre class="json">{JSON.stringify(job.spec, null, 2)}</pre>
      </details>
      {job.bundleDigest && <Manifest id={id} digest={job.bundleDigest} />}
      <LiveLog key={id} id={id} job={current} />
      <Timeline events={events} at={at} />
    </section>
  );
}

function AtTime({ id, at }: { id: string; at: string }) {
  const [value, setValue] = useState(toLocalInput(at));
  useEffect(() => setValue(toLocalInput(at)), [at]);
  return (
    <form
      class="at"
      aria-label="The job at a chosen time"
      onSubmit={(e) => {
        e.preventDefault();
        const iso = fromLocalInput(value);
        navigate(iso ? `/jobs/${id}?at=${encodeURIComponent(iso)}` : `/jobs/${id}`);
      }}
    >
      <label for="at">Show the job as it stood at</label>
      <input id="at" name="at" type="datetime-local" step="1" value={value} onInput={(e) => setValue((e.target as HTMLInputElement).value)} />
      <button type="submit" class="secondary">
        Show
      </button>
      {at && (
        <>
          <button type="button" class="secondary" onClick={() => navigate(`/jobs/${id}`)}>
            Now
          </button>
          <span class="badge" role="status">
            as of {time(at)}
          </span>
        </>
      )}
    </form>
  );
}

function Details({ job }: { job: Job }) {
  const ran = job.startedAt ? (job.finishedAt ? Date.parse(job.finishedAt) : Date.now()) - Date.parse(job.startedAt) : null;
  const rows: [string, string][] = [
    ['Command', commandText(job.spec)],
    ['Owner', job.owner],
    ['Priority', job.priority],
    ['Attempt', String(job.attempt)],
    ['Exit code', job.exitCode === null ? '–' : String(job.exitCode)],
    ['Signal', job.signal ?? '–'],
    ['Reason', job.reason ?? '–'],
    ['Executor', job.executor ?? '–'],
    ['Sandbox', job.sandbox ?? '–'],
    ['Submitted', time(job.submittedAt)],
    ['Started', time(job.startedAt)],
    ['Finished', time(job.finishedAt)],
    ['Ran for', ran === null ? '–' : duration(ran)],
    ['CPU time', job.usage ? duration(job.usage.cpuMs) : '–'],
    ['Peak memory', job.usage ? bytes(job.usage.maxRssBytes) : '–'],
    ['Output', bytes(job.logBytes)],
    ['Bundle', job.bundleDigest ?? 'none'],
    ['Timeout', typeof job.spec.timeoutSeconds === 'number' ? `${job.spec.timeoutSeconds} s` : 'none'],
  ];
  if (job.logSha256) rows.push(['Log sha256', job.logSha256]);
  if (job.rerunOf) rows.push(['Re-run of', job.rerunOf]);
  if (job.purged) rows.push(['Purged', 'logs and artifacts deleted']);
  return (
    <dl class="details">
      {rows.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd class={k === 'Bundle' || k === 'Command' || k === 'Log sha256' || k === 'Re-run of' ? 'mono' : undefined} data-testid={`detail-${k.toLowerCase().replace(/ /g, '-')}`}>
            {v}
          </dd>
        </div>
      ))}
    </dl>
  );
}

function Steps({ steps }: { steps: NonNullable<Job['steps']> }) {
  return (
    <table class="data">
      <caption>Steps</caption>
      <thead>
        <tr>
          <th scope="col">Step</th>
          <th scope="col">Status</th>
          <th scope="col">Exit</th>
          <th scope="col">Started</th>
          <th scope="col">Finished</th>
          <th scope="col">Duration</th>
          <th scope="col">Log bytes</th>
        </tr>
      </thead>
      <tbody>
        {steps.map((s) => (
          <tr key={s.step}>
            <td>
              {s.step}. {s.name}
              {s.continueOnFailure ? ' (continue on failure)' : ''}
            </td>
            <td>
              <StatusBadge status={s.status} />
              {s.interrupted ? ' interrupted' : ''}
            </td>
            <td>{s.exitCode ?? '–'}</td>
            <td>{time(s.startedAt)}</td>
            <td>{time(s.finishedAt)}</td>
            <td>{s.durationMs === null ? '–' : duration(s.durationMs)}</td>
            <td>{s.logOffset === null ? '–' : `${s.logOffset}–${s.logEnd ?? ''}`}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

interface ManifestDoc {
  source?: unknown;
  data?: { path: string; url: string; sha256: string }[];
  files?: { path: string; type: string; mode: string; size?: number; sha256?: string; target?: string }[];
}

function Manifest({ id, digest }: { id: string; digest: string }) {
  const [manifest, setManifest] = useState<ManifestDoc | null>(null);
  const [error, setError] = useState<unknown>(null);
  return (
    <details
      class="panel"
      onToggle={(e) => {
        if ((e.currentTarget as HTMLDetailsElement).open && !manifest) api.manifest(id).then((m) => setManifest(m as ManifestDoc), setError);
      }}
    >
      <summary>
        Bundle <span class="mono">{digest.slice(0, 19)}…</span> and its manifest
      </summary>
      {error !== null && <Notice kind="error">{problemText(error)}</Notice>}
      {manifest && (
        <>
          {manifest.source !== undefined && <pre class="json">{JSON.stringify(manifest.source, null, 2)}</pre>}
          <table class="data">
            <caption>{manifest.files?.length ?? 0} files</caption>
            <thead>
              <tr>
                <th scope="col">Path</th>
                <th scope="col">Mode</th>
                <th scope="col">Size</th>
                <th scope="col">sha256 or target</th>
              </tr>
            </thead>
            <tbody>
              {(manifest.files ?? []).slice(0, 1000).map((f) => (
                <tr key={f.path}>
                  <td class="mono">{f.path}</td>
                  <td class="mono">{f.mode}</td>
                  <td>{f.size === undefined ? '–' : bytes(f.size)}</td>
                  <td class="mono">{f.sha256 ? f.sha256.slice(0, 16) + '…' : `→ ${f.target ?? ''}`}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </details>
  );
}

/** The log, followed over the WebSocket from byte 0 of attempt 1, then live. */
function LiveLog({ id, job }: { id: string; job: Job }) {
  const buffer = useMemo(() => new LogBuffer(), [id]);
  const [, setVersion] = useState(0);
  const [ended, setEnded] = useState<string | null>(null);
  const [followError, setFollowError] = useState<string | null>(null);
  const [needle, setNeedle] = useState('');
  const [streams, setStreams] = useState<Set<LogStream>>(new Set(['stdout', 'stderr']));
  const [autoScroll, setAutoScroll] = useState(true);
  const pre = useRef<HTMLPreElement>(null);
  const repaint = useDebounced(() => setVersion((v) => v + 1), 50);

  useEffect(
    () =>
      live.follow(id, {
        position: () => ({ attempt: buffer.attempt, from: buffer.next }),
        onLog: (f) => buffer.push(f) && repaint(),
        onEnd: (f) => setEnded(`${f.status}${f.exitCode === null ? '' : `, exit code ${f.exitCode}`}`),
        onError: (f) => setFollowError(`${f.code}: ${f.message}`),
      }),
    [id],
  );
  useEffect(() => {
    if (autoScroll && pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  });

  const matches = buffer.search(needle, streams);
  const shown = matches.slice(-SHOWN_LINES);
  const download = async () => {
    const blob = await api.logText(id, Math.max(1, job.attempt));
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = `${id}-attempt-${Math.max(1, job.attempt)}.log`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  };
  const toggle = (s: LogStream) => {
    const next = new Set(streams);
    if (next.has(s)) next.delete(s);
    else next.add(s);
    setStreams(next);
  };

  return (
    <section class="panel log" aria-labelledby="log-heading">
      <h2 id="log-heading">Log</h2>
      <div class="log-tools">
        <label for="log-search">Search the log</label>
        <input id="log-search" type="search" value={needle} onInput={(e) => setNeedle((e.target as HTMLInputElement).value)} />
        <label class="check">
          <input type="checkbox" checked={streams.has('stdout')} onChange={() => toggle('stdout')} /> stdout
        </label>
        <label class="check">
          <input type="checkbox" checked={streams.has('stderr')} onChange={() => toggle('stderr')} /> stderr
        </label>
        <label class="check">
          <input type="checkbox" checked={autoScroll} onChange={() => setAutoScroll(!autoScroll)} /> Follow the end
        </label>
        <button type="button" class="secondary" onClick={() => void download()}>
          Download
        </button>
      </div>
      <p class="summary" aria-live="polite">
        {needle ? `${matches.length} matching line${matches.length === 1 ? '' : 's'}` : `${buffer.all().length} lines`}
        {matches.length > shown.length ? ` (the last ${shown.length} shown)` : ''}
        {buffer.dropped ? `; ${buffer.dropped} earlier lines dropped from the view (the download has them)` : ''}
        {ended ? ` · ended: ${ended}` : TERMINAL.has(job.status) ? '' : ' · following…'}
      </p>
      {followError && <Notice kind="error">{followError}</Notice>}
      <pre ref={pre} class="log-lines" tabIndex={0} role="log" aria-label="Log lines" data-testid="log">
        {shown.map((l) => (
          <span key={`${l.attempt}:${l.offset}`} class={`line ${l.stream}`} data-stream={l.stream}>
            <Highlight text={l.text} needle={needle} />
            {'\n'}
          </span>
        ))}
      </pre>
    </section>
  );
}

function Highlight({ text, needle }: { text: string; needle: string }) {
  if (!needle) return <>{text}</>;
  const i = text.toLowerCase().indexOf(needle.toLowerCase());
  if (i === -1) return <>{text}</>;
  return (
    <>
      {text.slice(0, i)}
      <mark>{text.slice(i, i + needle.length)}</mark>
      {text.slice(i + needle.length)}
    </>
  );
}

function Timeline({ events, at }: { events: JobEvent[]; at: string }) {
  const atMs = at ? Date.parse(at) : Infinity;
  const byId = new Map(events.map((e) => [e.id, e]));
  return (
    <section class="panel" aria-labelledby="history-heading">
      <h2 id="history-heading">History</h2>
      <ol class="timeline" data-testid="history">
        {events.map((e) => {
          const cause = e.causationId ? byId.get(e.causationId) : undefined;
          return (
            <li key={e.id} id={`event-${e.id}`} class={Date.parse(e.occurredAt) > atMs ? 'later' : undefined} data-type={e.type}>
              <div class="event-head">
                <strong>{e.type}</strong> <time dateTime={e.occurredAt}>{time(e.occurredAt)}</time> <span class="actor">by {e.actor || 'unknown'}</span>
                {e.causationId && (
                  <span class="cause">
                    {' '}
                    caused by {cause ? <a href={`#event-${cause.id}`}>{cause.type}</a> : <span class="mono">{e.causationId.slice(0, 12)}</span>}
                  </span>
                )}
              </div>
              <details>
                <summary>Data (position {e.position})</summary>
                <pre class="json">{JSON.stringify(e.data, null, 2)}</pre>
              </details>
            </li>
          );
        })}
      </ol>
    </section>
  );
}
