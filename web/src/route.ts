// Where the page is, as a URL: every conversation has its own address, so a reload opens it
// again and Back and Forward move between conversations, search results and the list.
//
//   /                      the list (nothing open)
//   /c/<convo id>          a conversation, at its latest messages (or its first unread one)
//   /c/<convo id>/m/<seq>  a conversation opened at message seq_no <seq> (a search result)
//   /find?q=<words>        the results of a search
//   /new                   the New conversation form
//
// None of these paths is one of the REST API's (/auth/, /conversations, /search, /users,
// /attachments/, /health, /push/) or /ws, so the ingress and the dev server hand them all to
// index.html (the SPA fallback).

import { validId } from './protocol';

export type Route =
  | { kind: 'home' }
  | { kind: 'convo'; id: string; seq?: number }
  | { kind: 'search'; q: string }
  | { kind: 'new' };

export const MAX_QUERY = 256;

/** The route of a URL's path and query; anything this client does not know is the list. */
export function parseRoute(pathname: string, search = ''): Route {
  const path = pathname.replace(/\/+$/, '') || '/';
  if (path === '/new') return { kind: 'new' };
  if (path === '/find') {
    const q = (new URLSearchParams(search).get('q') ?? '').trim().slice(0, MAX_QUERY);
    return q ? { kind: 'search', q } : { kind: 'home' };
  }
  const m = /^\/c\/([^/]+)(?:\/m\/([^/]+))?$/.exec(path);
  if (m) {
    let id: string;
    try {
      id = decodeURIComponent(m[1] as string);
    } catch {
      return { kind: 'home' };
    }
    if (!validId(id)) return { kind: 'home' };
    if (m[2] === undefined) return { kind: 'convo', id };
    const seq = /^[1-9][0-9]{0,15}$/.test(m[2]) ? Number(m[2]) : NaN;
    return Number.isSafeInteger(seq) ? { kind: 'convo', id, seq } : { kind: 'convo', id };
  }
  return { kind: 'home' };
}

/** The path (and query) of a route, for history.pushState. */
export function routePath(r: Route): string {
  switch (r.kind) {
    case 'home':
      return '/';
    case 'new':
      return '/new';
    case 'search':
      return `/find?${new URLSearchParams({ q: r.q })}`;
    case 'convo': {
      const base = `/c/${encodeURIComponent(r.id)}`;
      return r.seq !== undefined ? `${base}/m/${r.seq}` : base;
    }
  }
}

/** Whether two routes are the same place. */
export function sameRoute(a: Route, b: Route): boolean {
  return routePath(a) === routePath(b);
}
