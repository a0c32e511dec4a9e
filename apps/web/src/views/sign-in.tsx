import { useState } from 'preact/hooks';
import { ApiError, api, problemText, tokenStore, type Caller } from '../api';
import { Field, Notice, PageTitle, describedBy } from '../components/common';

/**
 * A bearer token, kept in this tab's sessionStorage (never in a URL). Under HTTPS with a
 * client certificate the browser is signed in already and this form is not shown.
 */
export function SignIn({ onSignedIn }: { onSignedIn: (c: Caller) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const caller = await api.me(token.trim());
      tokenStore.set(token.trim());
      onSignedIn(caller);
    } catch (err) {
      setError(err instanceof ApiError && err.problem.status === 401 ? 'That token is not known to this api.' : problemText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="sign-in">
      <PageTitle title="Sign in">Sign in to Jobline</PageTitle>
      <form onSubmit={submit} aria-busy={busy}>
        <Field id="token" label="API token" error={error ?? undefined} hint="The bearer token you use with the REST api (jobline dev prints one and keeps it in .jobline/dev-token).">
          <input
            id="token"
            name="token"
            type="password"
            autocomplete="current-password"
            required
            value={token}
            onInput={(e) => setToken((e.target as HTMLInputElement).value)}
            aria-invalid={error ? true : undefined}
            aria-describedby={describedBy('token', error ?? undefined, 'hint')}
          />
        </Field>
        <button type="submit" disabled={busy || token.trim() === ''}>
          Sign in
        </button>
      </form>
      <Notice>The token stays in this browser tab and is forgotten when the tab closes. Under HTTPS, a client certificate signs you in without a token.</Notice>
    </section>
  );
}
