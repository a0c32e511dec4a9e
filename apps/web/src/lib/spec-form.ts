/**
 * The submit form's values → a JobSpec for POST /v1/jobs. Only shape is checked here
 * (what the form can tell at once); the api validates the spec and its answer's field
 * errors are shown beside the form. Pure.
 */

export interface SpecForm {
  mode: 'shell' | 'argv';
  /** Shell: the script for /bin/sh -c. Argv: one argument per line. */
  command: string;
  priority: 'low' | 'normal' | 'high';
  timeoutSeconds: string;
  cpu: string;
  memoryMb: string;
  pids: string;
  network: boolean;
  /** KEY=value per line. */
  env: string;
  gitUrl: string;
  gitCommit: string;
  /** One data file per line: URL PATH [SHA256]. */
  data: string;
  /** One glob per line. */
  outputs: string;
  /** Upload an archive as the source instead of git. */
  archive: boolean;
}

export const EMPTY_FORM: SpecForm = {
  mode: 'shell',
  command: '',
  priority: 'normal',
  timeoutSeconds: '',
  cpu: '',
  memoryMb: '',
  pids: '',
  network: false,
  env: '',
  gitUrl: '',
  gitCommit: '',
  data: '',
  outputs: '',
  archive: false,
};

export type SpecResult = { ok: true; spec: Record<string, unknown> } | { ok: false; errors: Record<string, string> };

const lines = (s: string) => s.split('\n').map((l) => l.trim()).filter((l) => l !== '');

function positive(raw: string, field: string, errors: Record<string, string>, integer: boolean): number | undefined {
  if (raw.trim() === '') return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    errors[field] = integer ? 'a whole number above 0' : 'a number above 0';
    return undefined;
  }
  return n;
}

export function specFromForm(f: SpecForm): SpecResult {
  const errors: Record<string, string> = {};
  const spec: Record<string, unknown> = {};
  if (f.mode === 'shell') {
    if (f.command.trim() === '') errors.command = 'a command is required';
    else spec.command = f.command;
  } else {
    const argv = f.command.split('\n').filter((l) => l !== '');
    if (argv.length === 0 || argv[0].trim() === '') errors.command = 'the first line must name a program';
    else spec.command = argv;
  }
  spec.priority = f.priority;
  const timeout = positive(f.timeoutSeconds, 'timeoutSeconds', errors, true);
  if (timeout !== undefined) spec.timeoutSeconds = timeout;
  const resources: Record<string, unknown> = {};
  const cpu = positive(f.cpu, 'cpu', errors, false);
  if (cpu !== undefined) resources.cpu = cpu;
  const memoryMb = positive(f.memoryMb, 'memoryMb', errors, true);
  if (memoryMb !== undefined) resources.memoryMb = memoryMb;
  const pids = positive(f.pids, 'pids', errors, true);
  if (pids !== undefined) resources.pids = pids;
  if (f.network) resources.network = true;
  if (Object.keys(resources).length) spec.resources = resources;
  const env: Record<string, string> = {};
  for (const l of lines(f.env)) {
    const eq = l.indexOf('=');
    if (eq <= 0) {
      errors.env = `"${l}" is not KEY=value`;
      break;
    }
    env[l.slice(0, eq)] = l.slice(eq + 1);
  }
  if (Object.keys(env).length) spec.env = env;
  if (f.archive) {
    if (f.gitUrl || f.gitCommit) errors.gitUrl = 'choose git or an uploaded archive, not both';
    spec.source = { archive: true };
  } else if (f.gitUrl || f.gitCommit) {
    if (!f.gitUrl.trim()) errors.gitUrl = 'the repository URL is required with a commit';
    if (!/^([0-9a-f]{40}|[0-9a-f]{64})$/.test(f.gitCommit.trim())) errors.gitCommit = 'a full commit hash (40 or 64 hex digits)';
    spec.source = { git: { url: f.gitUrl.trim(), commit: f.gitCommit.trim() } };
  }
  const data = [];
  for (const l of lines(f.data)) {
    const [url, path, sha256, ...rest] = l.split(/\s+/);
    if (!url || !path || rest.length) {
      errors.data = `"${l}" is not URL PATH [SHA256]`;
      break;
    }
    data.push({ url, path, ...(sha256 ? { sha256 } : {}) });
  }
  if (data.length) spec.data = data;
  const outputs = lines(f.outputs);
  if (outputs.length) spec.outputs = outputs;
  return Object.keys(errors).length ? { ok: false, errors } : { ok: true, spec };
}

/** A field of the form named by a path the api reported (e.g. resources.cpu → cpu). */
export function formFieldOf(path: string): keyof SpecForm | null {
  const head = path.split('.')[0];
  const map: Record<string, keyof SpecForm> = {
    command: 'command',
    steps: 'command',
    priority: 'priority',
    timeoutSeconds: 'timeoutSeconds',
    env: 'env',
    source: 'gitUrl',
    data: 'data',
    outputs: 'outputs',
  };
  if (head === 'resources') {
    const field = path.split('.')[1];
    return field === 'cpu' || field === 'memoryMb' || field === 'pids' ? field : 'cpu';
  }
  return map[head] ?? null;
}
