import { describe, expect, it } from 'vitest';
import { PLAIN_FAVICON, badgeText, faviconHref, notificationText, shouldNotify, titleText, unreadTotal } from './attention';
import { isMuted, parseConversation, parseMute, type Conversation, type Message } from './protocol';
import { muteText } from './ui/format';

const NOW = Date.UTC(2025, 5, 3, 12, 0, 0);

function convo(id: string, unread: number, over: Partial<Conversation> = {}): Conversation {
  return {
    id,
    kind: 'group',
    title: id,
    topic: '',
    members: [{ user_id: 'u_me' }, { user_id: 'u_bob' }],
    last_seq: 10,
    unread,
    last_message: null,
    last_activity: 1,
    ...over,
  };
}

const msg = (over: Partial<Message> = {}): Message => ({
  convo_id: 'c1',
  seq_no: 3,
  server_msg_id: 'c1:3',
  sender_id: 'u_bob',
  client_msg_id: 'k',
  content: 'hello there',
  created_at: NOW,
  ...over,
});

describe('the unread count in the title and on the favicon', () => {
  it('adds the unread messages of the conversations that are not muted', () => {
    const list = [
      convo('a', 3),
      convo('b', 0),
      convo('c', 5, { muted: true, muted_until: null }),
      convo('d', 2, { muted: true, muted_until: NOW + 1000 }),
      convo('e', 4, { muted: true, muted_until: NOW - 1000 }), // the mute ran out
    ];
    expect(unreadTotal(list, NOW)).toBe(7);
    expect(unreadTotal([], NOW)).toBe(0);
  });

  it('says the count in the title, and nothing at 0', () => {
    expect(titleText(3)).toBe('(3) kchat');
    expect(titleText(0)).toBe('kchat');
    expect(titleText(150)).toBe('(99+) kchat');
    expect(badgeText(99)).toBe('99');
  });

  it('draws a badge with the count as an SVG data: URL, and the plain icon at 0', () => {
    expect(faviconHref(0)).toBe(PLAIN_FAVICON);
    const href = faviconHref(3);
    expect(href.startsWith('data:image/svg+xml,')).toBe(true);
    const svg = decodeURIComponent(href.slice('data:image/svg+xml,'.length));
    expect(svg).toContain('<svg');
    expect(svg).toMatch(/>3<\/text>/);
    expect(decodeURIComponent(faviconHref(1000))).toMatch(/>99\+<\/text>/);
  });
});

describe('desktop notifications', () => {
  const base = { message: msg(), me: 'u_me', conversation: convo('c1', 1), hidden: true, enabled: true, now: NOW };

  it('come for someone else\'s message while the tab is hidden, in a conversation not muted', () => {
    expect(shouldNotify(base)).toBe(true);
    expect(shouldNotify({ ...base, conversation: undefined })).toBe(true); // one I was just added to
  });

  it('never come while the tab is visible, when off, for my own or a deleted message', () => {
    expect(shouldNotify({ ...base, hidden: false })).toBe(false);
    expect(shouldNotify({ ...base, enabled: false })).toBe(false);
    expect(shouldNotify({ ...base, message: msg({ sender_id: 'u_me' }) })).toBe(false);
    expect(shouldNotify({ ...base, message: msg({ deleted: true }) })).toBe(false);
  });

  it('never come from a muted conversation, until its mute runs out', () => {
    expect(shouldNotify({ ...base, conversation: convo('c1', 1, { muted: true, muted_until: null }) })).toBe(false);
    expect(shouldNotify({ ...base, conversation: convo('c1', 1, { muted: true, muted_until: NOW + 60_000 }) })).toBe(false);
    expect(shouldNotify({ ...base, conversation: convo('c1', 1, { muted: true, muted_until: NOW - 1 }) })).toBe(true);
  });

  it('name the sender (and the group) and show the start of the message', () => {
    expect(notificationText('bob', 'Team', false, 'hello   there\nall')).toEqual({ title: 'bob in Team', body: 'hello there all' });
    expect(notificationText('bob', 'bob', true, 'hi')).toEqual({ title: 'bob', body: 'hi' });
    expect(notificationText('bob', null, false, 'hi').title).toBe('bob');
    const long = notificationText('bob', null, false, 'word '.repeat(100)).body;
    expect(long.length).toBeLessThanOrEqual(121);
    expect(long.endsWith('…')).toBe(true);
  });
});

describe('mutes: the conversation body and the mute answers', () => {
  it('reads muted and muted_until from a conversation body', () => {
    const base = { id: 'c1', title: 't', members: ['u_a'], last_seq: 0, unread: 0, last_message: null };
    const forever = parseConversation({ ...base, muted: true, muted_until: null });
    expect(forever).toMatchObject({ muted: true, muted_until: null });
    expect(isMuted(forever as Conversation, NOW)).toBe(true);
    const until = parseConversation({ ...base, muted: true, muted_until: '2025-06-03T13:00:00Z' });
    expect(until?.muted_until).toBe(Date.UTC(2025, 5, 3, 13));
    expect(isMuted(until as Conversation, NOW)).toBe(true);
    expect(isMuted(until as Conversation, Date.UTC(2025, 5, 3, 14))).toBe(false);
    const not = parseConversation({ ...base, muted: false, muted_until: null });
    expect(not?.muted).toBeUndefined();
    expect(isMuted(not as Conversation, NOW)).toBe(false);
  });

  it('reads the answer of PUT and DELETE /mute, and refuses another shape', () => {
    expect(parseMute({ muted: true, muted_until: null })).toEqual({ muted: true, muted_until: null });
    expect(parseMute({ muted: true, muted_until: '2025-06-03T13:00:00Z' })).toEqual({ muted: true, muted_until: Date.UTC(2025, 5, 3, 13) });
    expect(parseMute({ muted: false, muted_until: null })).toEqual({ muted: false, muted_until: null });
    expect(parseMute({ muted: 'yes' })).toBeNull();
    expect(parseMute({ muted: true, muted_until: 'soon' })).toBeNull();
    expect(parseMute(null)).toBeNull();
  });

  it('says how long a conversation stays muted', () => {
    expect(muteText(null)).toBe('Muted');
    expect(muteText(NOW + 3600_000, NOW)).toMatch(/^Muted until \S/);
    expect(muteText(NOW + 7 * 86400_000, NOW)).toMatch(/^Muted until .*\d/);
  });
});
