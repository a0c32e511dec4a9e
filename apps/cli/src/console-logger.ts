/** Human-readable logs for `jobline dev`; services in production log JSON (pino). */
export function consoleLogger(scope: string, level: 'debug' | 'info' | 'warn' | 'error' = 'info') {
  const order = { debug: 0, info: 1, warn: 2, error: 3 };
  const at = order[level];
  const line = (lvl: keyof typeof order, msg: string, rest: unknown[]) => {
    if (order[lvl] < at) return;
    const extra = rest.length ? ' ' + rest.map((r) => (r instanceof Error ? r.message : typeof r === 'string' ? r : JSON.stringify(r))).join(' ') : '';
    const out = `${new Date().toISOString()} ${lvl.toUpperCase().padEnd(5)} [${scope}] ${msg}${extra}\n`;
    (lvl === 'error' || lvl === 'warn' ? process.stderr : process.stdout).write(out);
  };
  return {
    debug: (m: string, ...r: unknown[]) => line('debug', m, r),
    log: (m: string, ...r: unknown[]) => line('info', m, r),
    info: (m: string, ...r: unknown[]) => line('info', m, r),
    warn: (m: string, ...r: unknown[]) => line('warn', m, r),
    error: (m: string, ...r: unknown[]) => line('error', m, r),
  };
}
