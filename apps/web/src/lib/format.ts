/** Formatting for the views. Pure. */

export function duration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  const h = Math.floor(m / 60);
  return `${h} h ${m % 60} min`;
}

export function bytes(n: number): string {
  if (!Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** "12:03:04" today, else "2025-01-31 12:03". */
export function time(iso: string | null, now = new Date()): string {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const pad = (n: number) => String(n).padStart(2, '0');
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const sameDay = d.toDateString() === now.toDateString();
  return sameDay ? hms : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms}`;
}

export function commandText(spec: { command?: string | string[]; steps?: { name: string }[] }): string {
  if (typeof spec.command === 'string') return spec.command;
  if (Array.isArray(spec.command)) return spec.command.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
  if (spec.steps) return spec.steps.map((s) => s.name).join(' → ');
  return '';
}

export function statusLabel(status: string): string {
  return status.replace('_', ' ');
}

/** Failure rate of finished jobs: failed + timed out over everything that finished, or null when nothing did. */
export function failureRate(b: { succeeded: number; failed: number; cancelled: number; timedOut: number }): number | null {
  const done = b.succeeded + b.failed + b.cancelled + b.timedOut;
  return done === 0 ? null : (b.failed + b.timedOut) / done;
}
