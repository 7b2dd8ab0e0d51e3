import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Api, cursorOf } from './api';

describe('history cursors', () => {
  it('reads {before_seq} and {since_seq}, and nothing else', () => {
    expect(cursorOf({ before_seq: 26 })).toEqual({ before_seq: 26 });
    expect(cursorOf({ since_seq: 75 })).toEqual({ since_seq: 75 });
    expect(cursorOf({ since_seq: 0 })).toEqual({ since_seq: 0 });
    expect(cursorOf(null)).toBeNull();
    expect(cursorOf('75')).toBeNull();
    expect(cursorOf({ before_seq: 0 })).toBeNull();
    expect(cursorOf({ since_seq: 1.5 })).toBeNull();
  });
});

describe('REST calls of search, history about a message, and mutes', () => {
  let calls: { method: string; url: string; body: string | null }[];
  let answer: unknown;

  beforeEach(() => {
    calls = [];
    const stored = new Map<string, string>([
      [
        'kchat.session',
        JSON.stringify({ user_id: 'u_me', username: 'me', access_token: 't', refresh_token: 'r', access_expires_at: Date.now() + 3600_000 }),
      ],
    ]);
    vi.stubGlobal('localStorage', {
      getItem: (k: string) => stored.get(k) ?? null,
      setItem: (k: string, v: string) => void stored.set(k, v),
      removeItem: (k: string) => void stored.delete(k),
    });
    vi.stubGlobal('window', { addEventListener: () => undefined });
    vi.stubGlobal('fetch', async (url: string, init: { method: string; body: string | null }) => {
      calls.push({ method: init.method, url, body: init.body });
      return new Response(JSON.stringify(answer), { status: 200 });
    });
  });

  afterEach(() => {
    vi.unstubAllGlobals();
  });

  const message = (seq: number, extra: Record<string, unknown> = {}) => ({
    convo_id: 'c1',
    seq_no: seq,
    sender_id: 'u_bob',
    content: `the pineapple ${seq}`,
    created_at: '2025-06-03T12:00:00Z',
    reactions: [],
    my_reaction: null,
    ...extra,
  });

  it('search passes q and the cursor, and keeps each result\'s headline', async () => {
    const api = new Api();
    answer = { messages: [message(4, { headline: 'the \uE000pineapple\uE001 4' }), message(2)], next_cursor: 'abc:def' };
    const page = await api.search('pine "a b"', null);
    expect(calls[0]?.url).toBe('/search?q=pine+%22a+b%22');
    expect(page.next_cursor).toBe('abc:def');
    expect(page.hits.map((h) => [h.message.seq_no, h.headline])).toEqual([
      [4, 'the \uE000pineapple\uE001 4'],
      [2, null],
    ]);
    answer = { messages: [], next_cursor: null };
    const next = await api.search('pine', 'abc:def');
    expect(calls[1]?.url).toBe('/search?q=pine&cursor=abc%3Adef');
    expect(next).toEqual({ hits: [], next_cursor: null });
  });

  it('history about a message reads both cursors', async () => {
    const api = new Api();
    answer = { messages: [message(5), message(6)], next_cursor: { since_seq: 6 }, prev_cursor: { before_seq: 5 } };
    const page = await api.messages('c1', { around_seq: 6, limit: 50 });
    expect(calls[0]?.url).toBe('/conversations/c1/messages?limit=50&around_seq=6');
    expect(page.next_cursor).toEqual({ since_seq: 6 });
    expect(page.prev_cursor).toEqual({ before_seq: 5 });
    answer = { messages: [message(1)], next_cursor: null, prev_cursor: null };
    expect((await api.messages('c1', { around_seq: 1 })).prev_cursor).toBeNull();
    // a plain page has no prev_cursor at all
    answer = { messages: [], next_cursor: null };
    expect('prev_cursor' in (await api.messages('c1', { limit: 5 }))).toBe(false);
  });

  it('mutes for a while or until unmuted, and unmutes', async () => {
    const api = new Api();
    answer = { muted: true, muted_until: '2025-06-03T13:00:00Z' };
    expect(await api.mute('c/1', 3600)).toEqual({ muted: true, muted_until: Date.UTC(2025, 5, 3, 13) });
    answer = { muted: true, muted_until: null };
    expect(await api.mute('c1', null)).toEqual({ muted: true, muted_until: null });
    answer = { muted: false, muted_until: null };
    expect(await api.unmute('c1')).toEqual({ muted: false, muted_until: null });
    expect(calls.map((c) => [c.method, c.url, c.body])).toEqual([
      ['PUT', '/conversations/c%2F1/mute', '{"for_s":3600}'],
      ['PUT', '/conversations/c1/mute', '{"for_s":null}'],
      ['DELETE', '/conversations/c1/mute', null],
    ]);
    answer = { muted: 'maybe' };
    await expect(api.unmute('c1')).rejects.toThrow(/unexpected/);
  });
});
