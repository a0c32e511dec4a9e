import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';

/**
 * History-API routing: the api answers index.html for each of these paths
 * (DASHBOARD_ROUTES in apps/api/src/web/dashboard.controller.ts), so links can be shared
 * and reloaded.
 */
export type Route =
  | { name: 'overview' }
  | { name: 'jobs' }
  | { name: 'job'; id: string }
  | { name: 'submit' }
  | { name: 'executors' }
  | { name: 'reference' }
  | { name: 'sign-in' }
  | { name: 'not-found' };

export function parseRoute(pathname: string): Route {
  if (pathname === '/') return { name: 'overview' };
  if (pathname === '/jobs') return { name: 'jobs' };
  const m = /^\/jobs\/([^/]+)$/.exec(pathname);
  if (m) return { name: 'job', id: decodeURIComponent(m[1]) };
  if (pathname === '/submit') return { name: 'submit' };
  if (pathname === '/executors') return { name: 'executors' };
  if (pathname === '/reference') return { name: 'reference' };
  if (pathname === '/sign-in') return { name: 'sign-in' };
  return { name: 'not-found' };
}

const listeners = new Set<() => void>();
window.addEventListener('popstate', () => listeners.forEach((l) => l()));

export function navigate(to: string, replace = false): void {
  if (to === location.pathname + location.search) return;
  if (replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  listeners.forEach((l) => l());
}

/** The current location; re-renders on navigation. */
export function useLocation(): { pathname: string; search: string } {
  const [, setTick] = useState(0);
  useEffect(() => {
    const l = () => setTick((t) => t + 1);
    listeners.add(l);
    return () => void listeners.delete(l);
  }, []);
  return { pathname: location.pathname, search: location.search };
}

/** An ordinary link (works with a middle click, opens in a new tab) that navigates in place on a plain click. */
export function Link(props: { href: string; children: ComponentChildren; class?: string; current?: boolean; title?: string }) {
  const { href, children, current } = props;
  return (
    <a
      class={props.class}
      title={props.title}
      aria-current={current ? 'page' : undefined}
      href={href}
      onClick={(e) => {
        if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(href);
      }}
    >
      {children}
    </a>
  );
}
