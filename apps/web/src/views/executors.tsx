import { useState } from 'preact/hooks';
import { api, problemText, type ExecutorInfo } from '../api';
import { Notice, PageTitle, useInterval } from '../components/common';
import { duration, time } from '../lib/format';

export function ExecutorsView() {
  const [items, setItems] = useState<ExecutorInfo[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  useInterval(() => api.executors().then((x) => (setItems(x), setError(null)), setError), 2000);
  return (
    <section>
      <PageTitle title="Executors">Executors</PageTitle>
      {error !== null && <Notice kind="error">{problemText(error)}</Notice>}
      {items && items.length === 0 && <Notice>No executor has sent a heartbeat since this api started.</Notice>}
      {items && items.length > 0 && (
        <table class="data executors">
          <caption class="visually-hidden">Executors, from their heartbeats (refreshed every 2 seconds)</caption>
          <thead>
            <tr>
              <th scope="col">Executor</th>
              <th scope="col">Kind</th>
              <th scope="col">State</th>
              <th scope="col">Running / capacity</th>
              <th scope="col">Heartbeat</th>
              <th scope="col">Sandbox</th>
              <th scope="col">Runtime</th>
              <th scope="col">Labels</th>
            </tr>
          </thead>
          <tbody>
            {items.map((x) => {
              const age = x.heartbeatAgeMs ?? Date.now() - Date.parse(x.lastSeen);
              return (
                <tr key={x.id} data-executor={x.id}>
                  <td class="mono">{x.id}</td>
                  <td>{x.kind}</td>
                  <td>
                    <span class={`badge ${x.alive ? 'status-succeeded' : 'status-failed'}`}>{x.state ?? (x.alive ? 'alive' : 'silent')}</span>
                    {x.note && <div class="note">{x.note}</div>}
                  </td>
                  <td>
                    <meter min={0} max={Math.max(1, x.capacity)} value={x.running} aria-label={`${x.running} of ${x.capacity} slots in use`} /> {x.running} / {x.capacity}
                  </td>
                  <td title={`last seen ${time(x.lastSeen)}`}>{duration(age)} ago</td>
                  <td>{x.sandbox}</td>
                  <td>{x.runtime}</td>
                  <td class="mono">
                    {Object.entries(x.labels)
                      .map(([k, v]) => `${k}=${v}`)
                      .join(' ') || '–'}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}
