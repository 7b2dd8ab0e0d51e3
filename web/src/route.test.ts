import { describe, expect, it } from 'vitest';
import { parseRoute, routePath, sameRoute, type Route } from './route';

describe('routes: the address of each place', () => {
  it('reads the list, a conversation, a message of it, a search and the new form', () => {
    expect(parseRoute('/')).toEqual({ kind: 'home' });
    expect(parseRoute('')).toEqual({ kind: 'home' });
    expect(parseRoute('/c/g_abc')).toEqual({ kind: 'convo', id: 'g_abc' });
    expect(parseRoute('/c/g_abc/')).toEqual({ kind: 'convo', id: 'g_abc' });
    expect(parseRoute('/c/g_abc/m/42')).toEqual({ kind: 'convo', id: 'g_abc', seq: 42 });
    expect(parseRoute('/find', '?q=pine%20apple')).toEqual({ kind: 'search', q: 'pine apple' });
    expect(parseRoute('/new')).toEqual({ kind: 'new' });
  });

  it('writes each route as a path that reads back the same', () => {
    const routes: Route[] = [
      { kind: 'home' },
      { kind: 'new' },
      { kind: 'convo', id: 'g_abc' },
      { kind: 'convo', id: 'd_x.y-z', seq: 7 },
      { kind: 'convo', id: 'odd/id?#%', seq: 1 },
      { kind: 'search', q: '"a phrase" & more?' },
    ];
    for (const r of routes) {
      const path = routePath(r);
      const u = new URL(path, 'http://x');
      expect(parseRoute(u.pathname, u.search)).toEqual(r);
    }
    expect(routePath({ kind: 'convo', id: 'g_1', seq: 5 })).toBe('/c/g_1/m/5');
    expect(routePath({ kind: 'convo', id: 'a/b' })).toBe('/c/a%2Fb');
    expect(routePath({ kind: 'search', q: 'a b' })).toBe('/find?q=a+b');
  });

  it('takes anything else as the list, and a bad message number as the conversation', () => {
    expect(parseRoute('/some/deep/link')).toEqual({ kind: 'home' });
    expect(parseRoute('/find', '?q=%20%20')).toEqual({ kind: 'home' });
    expect(parseRoute('/find')).toEqual({ kind: 'home' });
    expect(parseRoute('/c/%E0%A4%A')).toEqual({ kind: 'home' }); // not UTF-8
    expect(parseRoute('/c/has%20space')).toEqual({ kind: 'home' }); // not an id
    expect(parseRoute(`/c/${'x'.repeat(129)}`)).toEqual({ kind: 'home' });
    expect(parseRoute('/c/g_1/m/0')).toEqual({ kind: 'convo', id: 'g_1' });
    expect(parseRoute('/c/g_1/m/-3')).toEqual({ kind: 'convo', id: 'g_1' });
    expect(parseRoute('/c/g_1/m/99999999999999999')).toEqual({ kind: 'convo', id: 'g_1' });
    expect(parseRoute('/c/g_1/x/5')).toEqual({ kind: 'home' });
    // a long query is cut to what the search takes
    const long = parseRoute('/find', `?q=${'a'.repeat(300)}`);
    expect(long.kind === 'search' && long.q.length).toBe(256);
  });

  it('says when two routes are the same place', () => {
    expect(sameRoute({ kind: 'convo', id: 'a' }, { kind: 'convo', id: 'a' })).toBe(true);
    expect(sameRoute({ kind: 'convo', id: 'a' }, { kind: 'convo', id: 'a', seq: 1 })).toBe(false);
    expect(sameRoute({ kind: 'home' }, { kind: 'new' })).toBe(false);
  });
});
