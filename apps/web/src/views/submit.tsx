import { useRef, useState } from 'preact/hooks';
import { ApiError, api, problemText } from '../api';
import { Field, Notice, PageTitle, describedBy } from '../components/common';
import { EMPTY_FORM, formFieldOf, specFromForm, type SpecForm } from '../lib/spec-form';
import { navigate } from '../router';

export function SubmitView() {
  const [form, setForm] = useState<SpecForm>(EMPTY_FORM);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [failure, setFailure] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const archive = useRef<HTMLInputElement>(null);
  const set = <K extends keyof SpecForm>(k: K, v: SpecForm[K]) => setForm({ ...form, [k]: v });
  const text = (k: keyof SpecForm) => (e: Event) => set(k, (e.target as HTMLInputElement).value as never);
  const err = (k: keyof SpecForm) => errors[k];
  const aria = (k: keyof SpecForm, hint?: string) => ({ 'aria-invalid': err(k) ? true : undefined, 'aria-describedby': describedBy(k, err(k), hint) });

  const submit = async (e: Event) => {
    e.preventDefault();
    setFailure(null);
    const r = specFromForm(form);
    if (!r.ok) {
      setErrors(r.errors);
      setFailure('Some fields need a change: see the messages beside them.');
      return;
    }
    const file = form.archive ? archive.current?.files?.[0] : undefined;
    if (form.archive && !file) {
      setErrors({ archive: 'choose a zip or tar.gz file' });
      return;
    }
    setErrors({});
    setBusy(true);
    try {
      const job = await api.submit(r.spec, file);
      navigate(`/jobs/${job.id}`);
    } catch (error) {
      if (error instanceof ApiError && error.problem.errors?.length) {
        const byField: Record<string, string> = {};
        for (const i of error.problem.errors) {
          const f = formFieldOf(i.path);
          if (f) byField[f] ??= `${i.path}: ${i.message}`;
        }
        setErrors(byField);
      }
      setFailure(problemText(error));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section>
      <PageTitle title="Submit a job">Submit a job</PageTitle>
      {failure && <Notice kind="error">{failure}</Notice>}
      <form class="submit" onSubmit={submit} aria-busy={busy} noValidate>
        <fieldset>
          <legend>Command</legend>
          <div class="radios" role="radiogroup" aria-label="How to run it">
            <label class="check">
              <input type="radio" name="mode" value="shell" checked={form.mode === 'shell'} onChange={() => set('mode', 'shell')} /> Shell script (/bin/sh -c)
            </label>
            <label class="check">
              <input type="radio" name="mode" value="argv" checked={form.mode === 'argv'} onChange={() => set('mode', 'argv')} /> Program and arguments, one per line
            </label>
          </div>
          <Field id="command" label={form.mode === 'shell' ? 'Script' : 'Arguments'} error={err('command')} hint={form.mode === 'shell' ? 'e.g. echo hello && make test' : 'The first line is the program; each further line one argument.'}>
            <textarea id="command" name="command" rows={4} required value={form.command} onInput={text('command')} {...aria('command', 'hint')} />
          </Field>
        </fieldset>
        <fieldset class="grid">
          <legend>Scheduling and limits</legend>
          <Field id="priority" label="Priority">
            <select id="priority" name="priority" value={form.priority} onChange={text('priority')}>
              <option value="high">high</option>
              <option value="normal">normal</option>
              <option value="low">low</option>
            </select>
          </Field>
          <Field id="timeoutSeconds" label="Timeout (seconds)" error={err('timeoutSeconds')}>
            <input id="timeoutSeconds" name="timeoutSeconds" type="number" min="1" step="1" inputMode="numeric" value={form.timeoutSeconds} onInput={text('timeoutSeconds')} {...aria('timeoutSeconds')} />
          </Field>
          <Field id="cpu" label="CPU (cores)" error={err('cpu')}>
            <input id="cpu" name="cpu" type="number" min="0.01" step="0.01" inputMode="decimal" value={form.cpu} onInput={text('cpu')} {...aria('cpu')} />
          </Field>
          <Field id="memoryMb" label="Memory (MiB)" error={err('memoryMb')}>
            <input id="memoryMb" name="memoryMb" type="number" min="4" step="1" inputMode="numeric" value={form.memoryMb} onInput={text('memoryMb')} {...aria('memoryMb')} />
          </Field>
          <Field id="pids" label="Processes at most" error={err('pids')}>
            <input id="pids" name="pids" type="number" min="1" step="1" inputMode="numeric" value={form.pids} onInput={text('pids')} {...aria('pids')} />
          </Field>
          <div class="field">
            <label class="check" for="network">
              <input id="network" name="network" type="checkbox" checked={form.network} onChange={() => set('network', !form.network)} /> Network access
            </label>
          </div>
        </fieldset>
        <fieldset>
          <legend>Environment</legend>
          <Field id="env" label="Variables" error={err('env')} hint="KEY=value, one per line.">
            <textarea id="env" name="env" rows={2} value={form.env} onInput={text('env')} {...aria('env', 'hint')} />
          </Field>
        </fieldset>
        <fieldset>
          <legend>Source and data</legend>
          <Field id="gitUrl" label="Git repository URL" error={err('gitUrl')}>
            <input id="gitUrl" name="gitUrl" type="url" disabled={form.archive} value={form.gitUrl} onInput={text('gitUrl')} {...aria('gitUrl')} />
          </Field>
          <Field id="gitCommit" label="Commit (full hash)" error={err('gitCommit')}>
            <input id="gitCommit" name="gitCommit" type="text" pattern="[0-9a-f]{40}|[0-9a-f]{64}" disabled={form.archive} value={form.gitCommit} onInput={text('gitCommit')} {...aria('gitCommit')} />
          </Field>
          <div class="field">
            <label class="check" for="useArchive">
              <input id="useArchive" type="checkbox" checked={form.archive} onChange={() => set('archive', !form.archive)} /> Upload the source as an archive instead
            </label>
          </div>
          {form.archive && (
            <Field id="archive" label="Archive (zip or tar.gz)" error={errors.archive}>
              <input id="archive" name="archive" type="file" accept=".zip,.tar.gz,.tgz,application/zip,application/gzip" ref={archive} aria-describedby={describedBy('archive', errors.archive)} />
            </Field>
          )}
          <Field id="data" label="Data files" error={err('data')} hint="URL PATH [SHA256], one per line.">
            <textarea id="data" name="data" rows={2} value={form.data} onInput={text('data')} {...aria('data', 'hint')} />
          </Field>
          <Field id="outputs" label="Outputs to keep" error={err('outputs')} hint="Globs relative to the workspace, one per line (e.g. out/*.txt).">
            <textarea id="outputs" name="outputs" rows={2} value={form.outputs} onInput={text('outputs')} {...aria('outputs', 'hint')} />
          </Field>
        </fieldset>
        <button type="submit" disabled={busy}>
          {busy ? 'Submitting…' : 'Submit'}
        </button>
      </form>
    </section>
  );
}
