import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, api, tokenStore, type Caller } from './api';
import { Notice } from './components/common';
import { live, type ConnectionState } from './live';
import { Link, navigate, parseRoute, useLocation } from './router';
import { ExecutorsView } from './views/executors';
import { JobView } from './views/job';
import { JobsView } from './views/jobs';
import { OverviewView } from './views/overview';
import { ReferenceView } from './views/reference';
import { SignIn } from './views/sign-in';
import { SubmitView } from './views/submit';
import './styles.css';

const NAV = [
  { href: '/', label: 'Overview' },
  { href: '/jobs', label: 'Jobs' },
  { href: '/submit', label: 'Submit' },
  { href: '/executors', label: 'Executors' },
  { href: '/reference', label: 'API reference' },
];

function useConnectionState(): ConnectionState {
  const [s, setS] = useState<ConnectionState>(live.state);
  useEffect(() => live.onState(setS), []);
  return s;
}

function App() {
  const loc = useLocation();
  const route = parseRoute(loc.pathname);
  const [caller, setCaller] = useState<Caller | null>(null);
  const [checking, setChecking] = useState(true);
  const connection = useConnectionState();

  useEffect(() => {
    // A stored token, else no token at all: under HTTPS the client certificate may name us.
    if (!tokenStore.get() && location.protocol !== 'https:') {
      setChecking(false);
      return;
    }
    api
      .me(tokenStore.get())
      .then(setCaller, (err: unknown) => {
        if (err instanceof ApiError && err.problem.status === 401) tokenStore.clear();
      })
      .finally(() => setChecking(false));
  }, []);

  useEffect(() => {
    if (caller) live.start();
    else live.stop();
  }, [caller]);

  const signOut = () => {
    tokenStore.clear();
    live.stop();
    setCaller(null);
    navigate('/sign-in');
  };

  const publicRoute = route.name === 'reference';
  let main;
  if (checking) main = <Notice>Loading…</Notice>;
  else if (!caller && !publicRoute)
    main = (
      <SignIn
        onSignedIn={(c) => {
          setCaller(c);
          if (route.name === 'sign-in') navigate('/', true);
        }}
      />
    );
  else {
    switch (route.name) {
      case 'overview':
      case 'sign-in':
        main = <OverviewView caller={caller!} />;
        break;
      case 'jobs':
        main = <JobsView caller={caller!} search={loc.search} />;
        break;
      case 'job':
        main = <JobView key={route.id} id={route.id} search={loc.search} />;
        break;
      case 'submit':
        main = <SubmitView />;
        break;
      case 'executors':
        main = <ExecutorsView />;
        break;
      case 'reference':
        main = <ReferenceView />;
        break;
      default:
        main = <Notice kind="error">There is no page at {loc.pathname}.</Notice>;
    }
  }

  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <span class="brand">Jobline</span>
        <nav aria-label="Main">
          <ul>
            {NAV.map((n) => (
              <li key={n.href}>
                <Link href={n.href} current={n.href === '/' ? route.name === 'overview' : loc.pathname === n.href || (n.href === '/jobs' && route.name === 'job')}>
                  {n.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        {caller && (
          <div class="who">
            <span class={`conn conn-${connection}`} title="Live updates (WebSocket)">
              {connection === 'open' ? 'live' : connection === 'connecting' ? 'connecting…' : 'offline'}
            </span>
            <span data-testid="who">
              {caller.owner}
              {caller.admin ? ' (admin)' : ''}
            </span>
            <button type="button" class="secondary" onClick={signOut}>
              Sign out
            </button>
          </div>
        )}
      </header>
      <main id="main">{main}</main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
