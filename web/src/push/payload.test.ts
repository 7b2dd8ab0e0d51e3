import { describe, expect, it } from 'vitest';
import {
  GENERIC_BODY,
  HERE_MESSAGE,
  OPEN_MESSAGE,
  clickPath,
  clip,
  conversationTag,
  notificationData,
  notificationFor,
  notificationForPayload,
  parseOpenMessage,
  parsePushPayload,
  pickWindow,
  parseHere,
  seenAlready,
  type WindowInfo,
  type WindowView,
} from './payload';

const full = {
  type: 'message',
  convo_id: 'g_abc',
  title: 'Design',
  body: '3 new messages from ann',
  count: 3,
  first_seq: 5,
  last_seq: 7,
  sender_id: 'u_aaaaaaaaaaaaaaaaaaaaaaaaaa',
  sender: 'ann',
  mention: false,
  url: '/c/g_abc/m/5',
  tag: 'convo:g_abc',
};

describe('push payloads: what kchat-notifier sends', () => {
  it('reads every field of a message push', () => {
    expect(parsePushPayload(JSON.stringify(full))).toEqual(full);
  });

  it('shows the server\'s title and body, one notification per conversation, its place on click', () => {
    expect(notificationForPayload(JSON.stringify(full))).toEqual({
      title: 'Design',
      options: {
        body: '3 new messages from ann',
        tag: 'convo:g_abc',
        renotify: true,
        data: { url: '/c/g_abc/m/5', convo_id: 'g_abc' },
      },
    });
  });

  it('ignores fields it does not know', () => {
    const spec = notificationForPayload(JSON.stringify({ ...full, priority: 'high', extra: { a: [1] }, v: 2 }));
    expect(spec.title).toBe('Design');
    expect(spec.options.data).toEqual({ url: '/c/g_abc/m/5', convo_id: 'g_abc' });
  });

  it('takes a field of the wrong type as absent', () => {
    const m = parsePushPayload(JSON.stringify({ ...full, count: '3', first_seq: -1, mention: 'yes', title: 7, convo_id: 'has space' }));
    expect(m).toMatchObject({ count: null, first_seq: null, mention: false, title: null, convo_id: null });
  });

  it('shows a generic notification for anything that is not the JSON it knows, never throws', () => {
    const generic = { title: 'kchat', options: { body: GENERIC_BODY, tag: 'kchat', renotify: true, data: { url: '/', convo_id: null } } };
    for (const text of [null, undefined, '', 'not json', '{"type":', '[]', '42', 'null', '"a string"', '{}', 'x'.repeat(10000)]) {
      expect(notificationForPayload(text)).toEqual(generic);
    }
    expect(parsePushPayload('not json')).toBeNull();
    expect(parsePushPayload('[1,2]')).toBeNull();
  });

  it('makes what it can of a partial push', () => {
    // no title: the sender; no body: the count
    const a = notificationFor(parsePushPayload(JSON.stringify({ type: 'message', convo_id: 'd_1', sender: 'bob', count: 2 })));
    expect(a).toEqual({
      title: 'bob',
      options: { body: '2 new messages from bob', tag: 'convo:d_1', renotify: true, data: { url: '/c/d_1', convo_id: 'd_1' } },
    });
    const b = notificationFor(parsePushPayload(JSON.stringify({ convo_id: 'd_1', sender: 'bob', count: 1, first_seq: 9 })));
    expect(b.options.body).toBe('New message from bob');
    expect(b.options.data.url).toBe('/c/d_1/m/9');
    // another type the client does not know yet: still shown, with what it says
    const c = notificationFor(parsePushPayload(JSON.stringify({ type: 'digest', title: 'Your day', body: '12 messages' })));
    expect(c).toEqual({ title: 'Your day', options: { body: '12 messages', tag: 'kchat', renotify: true, data: { url: '/', convo_id: null } } });
  });

  it('keeps titles and bodies to one short line', () => {
    expect(clip('a\nb\tc\u0007d', 50)).toBe('a b c d');
    expect(clip('x'.repeat(300), 10)).toBe(`${'x'.repeat(9)}…`);
    const spec = notificationFor(parsePushPayload(JSON.stringify({ ...full, title: 't'.repeat(500), body: 'b'.repeat(500) })));
    expect(spec.title.length).toBe(120);
    expect(spec.options.body.length).toBe(240);
    // a blank title or tag falls back
    const blank = notificationFor(parsePushPayload(JSON.stringify({ ...full, title: '  ', tag: 'a\nb' })));
    expect(blank.title).toBe('ann');
    expect(blank.options.tag).toBe(conversationTag('g_abc'));
  });

  it('opens only a place of this client, never another origin', () => {
    const at = (url: string, convo_id: string | null = 'g_abc') => clickPath({ ...parsePushPayload('{}')!, url, convo_id, first_seq: 5 });
    expect(at('/c/g_abc/m/5')).toBe('/c/g_abc/m/5');
    expect(at('/c/g_abc')).toBe('/c/g_abc');
    expect(at('/c/g_abc/m/5?x=1#y')).toBe('/c/g_abc/m/5');
    // elsewhere: the conversation at its first new message instead
    for (const bad of ['https://evil.example/c/g_abc', '//evil.example/c/g_abc', '/\\evil.example/c/g_abc', 'javascript:alert(1)', '/c/g_other/m/5', '/find?q=x', '/auth/login', '']) {
      expect(at(bad)).toBe('/c/g_abc/m/5');
    }
    expect(at('//evil.example/', null)).toBe('/');
    expect(clickPath(null)).toBe('/');
  });

  it('reads a shown notification\'s data for its click, checked again', () => {
    expect(notificationData({ url: '/c/g_abc/m/5', convo_id: 'g_abc' })).toEqual({ url: '/c/g_abc/m/5', convo_id: 'g_abc' });
    expect(notificationData({ url: 'https://evil.example/' })).toEqual({ url: '/', convo_id: null });
    expect(notificationData(null)).toEqual({ url: '/', convo_id: null });
    expect(notificationData('x')).toEqual({ url: '/', convo_id: null });
  });
});

describe('push windows: when a push is seen already, which window a click uses', () => {
  const win = (name: string, focused: boolean, visibilityState = focused ? 'visible' : 'hidden'): WindowInfo & { name: string } => ({ name, focused, visibilityState });
  const m = parsePushPayload(JSON.stringify(full));

  it('reads what a window says it shows', () => {
    expect(parseHere({ type: HERE_MESSAGE, convo_id: 'g_abc', visible: true, focused: true })).toEqual({ convo_id: 'g_abc', visible: true, focused: true });
    expect(parseHere({ type: HERE_MESSAGE, convo_id: null, visible: 'yes' })).toEqual({ convo_id: null, visible: false, focused: false });
    expect(parseHere({ type: 'other' })).toBeNull();
    expect(parseHere(null)).toBeNull();
  });

  it('does not show a push of the conversation a focused, visible window shows', () => {
    const view = (convo_id: string | null, focused = true, visible = true): WindowView => ({ convo_id, focused, visible });
    expect(seenAlready(m, [view('g_abc')])).toBe(true);
    expect(seenAlready(m, [view('g_other'), view('g_abc')])).toBe(true);
    expect(seenAlready(m, [view('g_abc', false)])).toBe(false);
    expect(seenAlready(m, [view('g_abc', true, false)])).toBe(false);
    expect(seenAlready(m, [view('g_other')])).toBe(false);
    expect(seenAlready(m, [view(null)])).toBe(false);
    expect(seenAlready(m, [])).toBe(false);
    expect(seenAlready(null, [view('g_abc')])).toBe(false);
  });

  it('brings forward the focused window, else a visible one, else the first', () => {
    const a = win('https://chat.example/', false);
    const b = win('https://chat.example/c/x', false, 'visible');
    const c = win('https://chat.example/find?q=1', true);
    expect(pickWindow([a, b, c])).toBe(c);
    expect(pickWindow([a, b])).toBe(b);
    expect(pickWindow([a])).toBe(a);
    expect(pickWindow([])).toBeNull();
  });

  it('reads the worker\'s open message, with a path of this client only', () => {
    expect(parseOpenMessage({ type: OPEN_MESSAGE, url: '/c/g_abc/m/5' })).toEqual({ type: OPEN_MESSAGE, url: '/c/g_abc/m/5' });
    expect(parseOpenMessage({ type: OPEN_MESSAGE, url: 'https://evil.example/c/g_abc' })).toEqual({ type: OPEN_MESSAGE, url: '/' });
    expect(parseOpenMessage({ type: 'other', url: '/c/g_abc' })).toBeNull();
    expect(parseOpenMessage('kchat.open')).toBeNull();
  });
});
