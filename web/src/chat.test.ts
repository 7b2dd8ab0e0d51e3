import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError, type Api, type Session } from './api';
import { ChatClient, manageErrorText, reactionErrorText } from './chat';
import type { ClientFrame, Message, ServerFrame } from './protocol';
import { ChatSocket } from './socket';

describe('refusals of a change to a conversation, in words', () => {
  it('names what the role, the last owner or a direct conversation stopped', () => {
    expect(manageErrorText(new ApiError(403, 'not_allowed', 'only owners and admins remove members'))).toBe(
      'Your role in this conversation does not allow that.',
    );
    expect(manageErrorText(new ApiError(409, 'last_owner', 'x'))).toMatch(/only owner/);
    expect(manageErrorText(new ApiError(409, 'direct_conversation', 'x'))).toMatch(/direct conversation/);
    expect(manageErrorText(new ApiError(404, 'no_such_member', 'x'))).toMatch(/not a member/);
    expect(manageErrorText(new ApiError(404, 'not_found', 'x'))).toMatch(/gone/);
  });

  it('passes the server\'s reason on for invalid input and anything else', () => {
    expect(manageErrorText(new ApiError(400, 'invalid_request', 'title must be a string of 1 to 256 bytes of UTF-8'))).toBe(
      'Refused: title must be a string of 1 to 256 bytes of UTF-8.',
    );
    expect(manageErrorText(new ApiError(0, 'network', 'Cannot reach the server.'))).toBe('Cannot reach the server.');
    expect(manageErrorText(new Error('boom'))).toBe('boom');
  });
});

describe('a reply is sent, retried and kept in the outbox with its reply_to', () => {
  const session: Session = { user_id: 'u_me', username: 'me', access_token: 't', refresh_token: 'r', access_expires_at: 0 };
  const api = {
    conversations: async () => [],
    userName: async () => null,
    messages: async () => ({ messages: [], next_cursor: null }),
  } as unknown as Api;
  let stored: Map<string, string>;
  let sent: ClientFrame[];
  let connected: boolean;

  beforeEach(() => {
    stored = new Map();
    sent = [];
    connected = true;
    vi.stubGlobal('localStorage', {
      getItem: (k: string) => stored.get(k) ?? null,
      setItem: (k: string, v: string) => void stored.set(k, v),
      removeItem: (k: string) => void stored.delete(k),
    });
    vi.spyOn(ChatSocket.prototype, 'send').mockImplementation((f: ClientFrame) => {
      if (connected) sent.push(f);
      return connected;
    });
  });

  afterEach(() => {
    vi.restoreAllMocks();
    vi.unstubAllGlobals();
  });

  const frame = (c: ChatClient, f: ServerFrame) => (c as unknown as { onFrame(f: ServerFrame): void }).onFrame(f);
  const reopen = (c: ChatClient) => (c as unknown as { onOpen(): void }).onOpen();
  const sends = () => sent.filter((f) => f.type === 'message.send');

  it('sends reply_to, and the same frame again on a retry and after a reconnect', () => {
    const c = new ChatClient(api, session);
    expect(c.sendMessage('c1', '  answer ', 4)).toBeNull();
    expect(sends()).toEqual([{ type: 'message.send', convo_id: 'c1', client_msg_id: expect.any(String), content: 'answer', reply_to: 4 }]);
    const first = sends()[0];
    expect(c.getState().logs['c1']?.pending[0]?.reply_to).toBe(4);
    // refused (not an earlier message): the bubble fails, with words; Retry sends it again as it was
    frame(c, { type: 'ack', ack: { client_msg_id: (first as { client_msg_id: string }).client_msg_id, status: 'error', error: { code: 'no_such_message', message: 'x' } } });
    expect(c.getState().logs['c1']?.pending[0]).toMatchObject({ state: 'failed', error: 'The message it replies to is not in this conversation.' });
    c.retry('c1', (first as { client_msg_id: string }).client_msg_id);
    expect(sends()[1]).toEqual(first);
    // a reconnect resends what waits for an ack: the same frame again
    reopen(c);
    expect(sends()[2]).toEqual(first);
    // a message without a reply has no reply_to at all
    c.sendMessage('c1', 'plain');
    expect('reply_to' in (sends()[3] as object)).toBe(false);
  });

  it('an unsent reply survives a reload with its reply_to', () => {
    connected = false;
    const c = new ChatClient(api, session);
    c.sendMessage('c1', 'later', 2);
    const saved = JSON.parse(stored.get('kchat.outbox.u_me') ?? '[]') as unknown[];
    expect(saved).toEqual([expect.objectContaining({ content: 'later', reply_to: 2 })]);
    connected = true;
    const again = new ChatClient(api, session);
    expect(again.getState().logs['c1']?.pending[0]).toMatchObject({ content: 'later', reply_to: 2 });
    reopen(again);
    expect(sends()).toEqual([expect.objectContaining({ content: 'later', reply_to: 2 })]);
  });

  const file = (id: string) => ({ id, key: `attachments/c1/${id}/f/${id}.pdf`, name: `${id}.pdf`, size: 7, content_type: 'application/pdf', width: null, height: null, thumb_key: null });

  it('a message of files carries their ids on every attempt, and becomes a message with the files', () => {
    const c = new ChatClient(api, session);
    expect(c.sendMessage('c1', '', undefined, [])).toBe('Write something first.');
    expect(c.sendMessage('c1', '', undefined, Array.from({ length: 11 }, (_, i) => file(`a_${i}`)))).toMatch(/at most 10 files/);
    expect(c.sendMessage('c1', '  ', undefined, [file('a_1'), file('a_2')])).toBeNull();
    const first = sends()[0] as { client_msg_id: string };
    expect(first).toEqual({ type: 'message.send', convo_id: 'c1', client_msg_id: expect.any(String), content: '', attachments: ['a_1', 'a_2'] });
    // an answer that says "try again", and a reconnect: the same frame each time
    frame(c, { type: 'ack', ack: { client_msg_id: first.client_msg_id, status: 'error', error: { code: 'invalid_attachment', message: 'not completed' } } });
    expect(c.getState().logs['c1']?.pending[0]).toMatchObject({ state: 'failed', error: 'A file it carries cannot be sent (not completed).' });
    c.retry('c1', first.client_msg_id);
    reopen(c);
    expect(sends().slice(1)).toEqual([first, first]);
    frame(c, { type: 'ack', ack: { client_msg_id: first.client_msg_id, status: 'ok', seq_no: 1, server_msg_id: 's1' } });
    const m = c.getState().logs['c1']?.messages[0];
    expect(m?.attachments?.map((a) => a.id)).toEqual(['a_1', 'a_2']);
    expect(m?.content).toBe('');
  });

  it('an unsent message of files survives a reload with them', () => {
    connected = false;
    const c = new ChatClient(api, session);
    c.sendMessage('c1', '', undefined, [file('a_9')]);
    connected = true;
    const again = new ChatClient(api, session);
    expect(again.getState().logs['c1']?.pending[0]?.attachments).toEqual([file('a_9')]);
    reopen(again);
    expect(sends()).toEqual([expect.objectContaining({ content: '', attachments: ['a_9'] })]);
  });
});

describe('reactions: history, message.reaction frames, message.react', () => {
  const session: Session = { user_id: 'u_me', username: 'me', access_token: 't', refresh_token: 'r', access_expires_at: 0 };
  const msg = (seq: number, extra: Partial<Message> = {}): Message => ({
    convo_id: 'c1',
    seq_no: seq,
    server_msg_id: `c1:${seq}`,
    sender_id: 'u_bob',
    client_msg_id: `k${seq}`,
    content: `text ${seq}`,
    created_at: 1_700_000_000_000 + seq,
    ...extra,
  });
  let pages: Message[][];
  let asked: { limit?: number; before_seq?: number; since_seq?: number }[];
  let sent: ClientFrame[];
  let connected: boolean;
  const api = {
    conversations: async () => [],
    userName: async () => null,
    messages: async (_id: string, q: { limit?: number }) => {
      asked.push(q);
      return { messages: pages.shift() ?? [], next_cursor: null };
    },
  } as unknown as Api;

  beforeEach(() => {
    pages = [];
    asked = [];
    sent = [];
    connected = true;
    const stored = new Map<string, string>();
    vi.stubGlobal('localStorage', {
      getItem: (k: string) => stored.get(k) ?? null,
      setItem: (k: string, v: string) => void stored.set(k, v),
      removeItem: (k: string) => void stored.delete(k),
    });
    vi.stubGlobal('document', { visibilityState: 'visible', addEventListener: () => undefined, removeEventListener: () => undefined });
    vi.spyOn(ChatSocket.prototype, 'send').mockImplementation((f: ClientFrame) => {
      if (connected) sent.push(f);
      return connected;
    });
  });

  afterEach(() => {
    vi.restoreAllMocks();
    vi.unstubAllGlobals();
    vi.useRealTimers();
  });

  const frame = (c: ChatClient, f: ServerFrame) => (c as unknown as { onFrame(f: ServerFrame): void }).onFrame(f);
  const reopen = (c: ChatClient) => (c as unknown as { onOpen(): void }).onOpen();
  const shown = (c: ChatClient, seq: number) => c.getState().logs['c1']?.messages.find((m) => m.seq_no === seq);
  const settle = () => new Promise((r) => setTimeout(r, 0));
  const reaction = (user_id: string, emoji: string | null, reactions: { emoji: string; count: number }[], seq_no = 1): ServerFrame => ({
    type: 'message.reaction',
    convo_id: 'c1',
    seq_no,
    user_id,
    emoji,
    reactions,
  });

  async function opened(...history: Message[]): Promise<ChatClient> {
    pages.push(history);
    const c = new ChatClient(api, session);
    c.open('c1');
    await settle();
    return c;
  }

  it('a history page gives each message its reactions and mine', async () => {
    const c = await opened(
      msg(1, { reactions: [{ emoji: '👍', count: 2 }], my_reaction: '👍' }),
      msg(2, { reactions: [], my_reaction: null }),
    );
    expect(shown(c, 1)).toMatchObject({ reactions: [{ emoji: '👍', count: 2 }], my_reaction: '👍' });
    expect(shown(c, 2)).toMatchObject({ reactions: [], my_reaction: null });
  });

  it('a frame sets the reactions as it says them; mine changes only with a frame of mine', async () => {
    const c = await opened(msg(1, { reactions: [], my_reaction: null }));
    frame(c, reaction('u_bob', '👍', [{ emoji: '👍', count: 1 }]));
    expect(shown(c, 1)).toMatchObject({ reactions: [{ emoji: '👍', count: 1 }], my_reaction: null });
    frame(c, reaction('u_me', '👍', [{ emoji: '👍', count: 2 }]));
    expect(shown(c, 1)).toMatchObject({ reactions: [{ emoji: '👍', count: 2 }], my_reaction: '👍' });
    // bob replaces his: the counts are the frame's, not counted here
    frame(c, reaction('u_bob', '❤️', [{ emoji: '❤️', count: 1 }, { emoji: '👍', count: 1 }]));
    expect(shown(c, 1)).toMatchObject({ reactions: [{ emoji: '❤️', count: 1 }, { emoji: '👍', count: 1 }], my_reaction: '👍' });
    frame(c, reaction('u_me', null, [{ emoji: '❤️', count: 1 }]));
    expect(shown(c, 1)).toMatchObject({ reactions: [{ emoji: '❤️', count: 1 }], my_reaction: null });
    // a frame for a message of another conversation or one not loaded changes nothing here
    const before = c.getState().logs['c1'];
    frame(c, reaction('u_bob', '👍', [{ emoji: '👍', count: 1 }], 9));
    expect(c.getState().logs['c1']).toBe(before);
  });

  it('a deleted message loses its reactions, and a late frame does not bring them back', async () => {
    const c = await opened(msg(1, { reactions: [{ emoji: '👍', count: 1 }], my_reaction: '👍' }));
    frame(c, { type: 'message.delete', convo_id: 'c1', seq_no: 1 });
    expect(shown(c, 1)).toMatchObject({ deleted: true, reactions: [], my_reaction: null });
    frame(c, reaction('u_bob', '🎉', [{ emoji: '🎉', count: 1 }]));
    expect(shown(c, 1)?.reactions).toEqual([]);
  });

  it('a history page older than a frame does not undo what the frame said', async () => {
    const c = await opened(msg(1, { reactions: [], my_reaction: null }));
    frame(c, reaction('u_me', '😂', [{ emoji: '😂', count: 1 }]));
    // a reconnect: the latest page again, from a read model that has not caught up
    pages.push([msg(1, { reactions: [], my_reaction: null })]);
    reopen(c); // the first open
    reopen(c); // a reconnect
    await settle();
    expect(asked.at(-1)).toEqual({ limit: 50 });
    expect(shown(c, 1)).toMatchObject({ reactions: [{ emoji: '😂', count: 1 }], my_reaction: '😂' });
  });

  it('after a reconnect the latest page brings what the socket missed', async () => {
    const c = await opened(msg(1, { reactions: [], my_reaction: null }));
    reopen(c);
    const n = asked.length;
    pages.push([msg(1, { reactions: [{ emoji: '🎉', count: 3 }], my_reaction: '🎉' })]);
    reopen(c);
    await settle();
    expect(asked.length).toBe(n + 1);
    expect(shown(c, 1)).toMatchObject({ reactions: [{ emoji: '🎉', count: 3 }], my_reaction: '🎉' });
  });

  it('react sends message.react (null removes); a bad reaction or a tombstone is not sent', async () => {
    const c = await opened(msg(1, { reactions: [], my_reaction: null }), msg(2, { content: '', deleted: true }));
    sent = [];
    expect(c.react('c1', 1, '👍')).toBeNull();
    expect(c.react('c1', 1, null)).toBeNull();
    expect(sent).toEqual([
      { type: 'message.react', convo_id: 'c1', seq_no: 1, emoji: '👍' },
      { type: 'message.react', convo_id: 'c1', seq_no: 1, emoji: null },
    ]);
    expect(c.react('c1', 1, 'a b')).toMatch(/not a reaction/);
    expect(c.react('c1', 2, '👍')).toMatch(/deleted/);
    connected = false;
    expect(c.react('c1', 1, '👍')).toMatch(/Not connected/);
    expect(sent).toHaveLength(2);
  });

  it('a refused reaction shows a notice in words', async () => {
    const c = await opened(msg(1));
    frame(c, { type: 'error', code: 'too_old', message: 'too old', in_reply_to: 'message.react', convo_id: 'c1' });
    frame(c, { type: 'error', code: 'rate_limited', message: 'slow down', in_reply_to: 'message.react', convo_id: null });
    expect(c.getState().notices.map((n) => [n.kind, n.text])).toEqual([
      ['error', 'That message is too old to react to.'],
      ['error', 'Too many reactions at once: try again in a moment.'],
    ]);
    expect(reactionErrorText('too_many_reactions', 'x')).toMatch(/as many different reactions/);
    // refused as deleted: the latest page is asked for again, and shows the tombstone
    const n = asked.length;
    pages.push([msg(1, { content: '', deleted: true, reactions: [], my_reaction: null })]);
    frame(c, { type: 'error', code: 'deleted', message: 'the message was deleted', in_reply_to: 'message.react', convo_id: 'c1' });
    await settle();
    expect(asked.length).toBe(n + 1);
    expect(shown(c, 1)?.deleted).toBe(true);
    expect(c.getState().notices.at(-1)?.text).toBe('That message was deleted: it takes no reactions.');
    expect(reactionErrorText('deleted', 'x')).toMatch(/deleted/);
    expect(reactionErrorText('weird', 'the reason')).toBe('Your reaction was not saved: the reason.');
  });
});

describe('a conversation opened at a message (a search result, a message link)', () => {
  const session: Session = { user_id: 'u_me', username: 'me', access_token: 't', refresh_token: 'r', access_expires_at: 0 };
  const LAST = 200;
  let last: number;
  const msg = (seq: number): Message => ({
    convo_id: 'c1',
    seq_no: seq,
    server_msg_id: `c1:${seq}`,
    sender_id: 'u_bob',
    client_msg_id: `k${seq}`,
    content: `text ${seq}`,
    created_at: 1_700_000_000_000 + seq,
  });
  const range = (lo: number, hi: number) => Array.from({ length: Math.max(0, hi - lo + 1) }, (_, i) => msg(lo + i));
  type Q = { limit?: number; before_seq?: number; since_seq?: number; around_seq?: number };
  let asked: Q[];
  let sent: ClientFrame[];
  // history as the server pages it (messages 1..last)
  const api = {
    conversations: async () => [],
    userName: async () => null,
    messages: async (_id: string, q: Q) => {
      asked.push(q);
      const limit = q.limit ?? 50;
      if (q.around_seq !== undefined) {
        const lo = Math.max(1, q.around_seq - Math.floor((limit + 1) / 2) + 1);
        const hi = Math.min(last, lo + limit - 1);
        return {
          messages: range(lo, hi),
          next_cursor: hi < last ? { since_seq: hi } : null,
          prev_cursor: lo > 1 ? { before_seq: lo } : null,
        };
      }
      if (q.since_seq !== undefined) {
        const hi = Math.min(last, q.since_seq + limit);
        return { messages: range(q.since_seq + 1, hi), next_cursor: hi < last ? { since_seq: hi } : null };
      }
      const top = Math.min(last, (q.before_seq ?? last + 1) - 1);
      const lo = Math.max(1, top - limit + 1);
      return { messages: range(lo, top), next_cursor: lo > 1 ? { before_seq: lo } : null };
    },
  } as unknown as Api;

  beforeEach(() => {
    last = LAST;
    asked = [];
    sent = [];
    const stored = new Map<string, string>();
    vi.stubGlobal('localStorage', {
      getItem: (k: string) => stored.get(k) ?? null,
      setItem: (k: string, v: string) => void stored.set(k, v),
      removeItem: (k: string) => void stored.delete(k),
    });
    vi.stubGlobal('document', { visibilityState: 'visible', addEventListener: () => undefined, removeEventListener: () => undefined });
    vi.spyOn(ChatSocket.prototype, 'send').mockImplementation((f: ClientFrame) => {
      sent.push(f);
      return true;
    });
  });

  afterEach(() => {
    vi.restoreAllMocks();
    vi.unstubAllGlobals();
  });

  const frame = (c: ChatClient, f: ServerFrame) => (c as unknown as { onFrame(f: ServerFrame): void }).onFrame(f);
  const settle = () => new Promise((r) => setTimeout(r, 0));
  const seqs = (c: ChatClient) => c.getState().logs['c1']?.messages.map((m) => m.seq_no) ?? [];
  const syncs = () => sent.filter((f) => f.type === 'sync');

  it('loads the page about it (around_seq), with neighbours on both sides', async () => {
    const c = new ChatClient(api, session);
    c.open('c1', 60);
    expect(c.getState().openSeq).toBe(60);
    expect(c.getState().views['c1']?.loadingLatest).toBe(true);
    await settle();
    expect(asked).toEqual([{ around_seq: 60, limit: 50 }]);
    expect(seqs(c)).toEqual(range(36, 85).map((m) => m.seq_no));
    expect(c.getState().views['c1']).toMatchObject({ loadingLatest: false, detached: true });
    // detached: no sync, no backfill of the "gap" up to the newest message
    expect(syncs()).toEqual([]);
  });

  it('grows older and newer page by page until it joins the newest messages, then goes live', async () => {
    const c = new ChatClient(api, session);
    c.open('c1', 60);
    await settle();
    await c.loadOlder('c1');
    expect(asked.at(-1)).toEqual({ before_seq: 36, limit: 50 });
    expect(seqs(c)[0]).toBe(1);
    expect(c.getState().logs['c1']?.reachedStart).toBe(true);
    // a live message meanwhile waits in history: the loaded part stays without a hole
    frame(c, { type: 'message.create', message: msg(201) });
    last = 201;
    expect(seqs(c).at(-1)).toBe(85);
    expect(c.getState().logs['c1']?.knownLast).toBe(201);
    await c.loadNewer('c1');
    expect(asked.at(-1)).toEqual({ since_seq: 85, limit: 50 });
    expect(c.getState().views['c1']?.detached).toBe(true);
    await c.loadNewer('c1'); // 136..185
    expect(c.getState().views['c1']?.detached).toBe(true);
    expect(syncs()).toEqual([]);
    await c.loadNewer('c1'); // 186..201: the last page
    expect(c.getState().views['c1']?.detached).toBe(false);
    expect(seqs(c)).toEqual(range(1, 201).map((m) => m.seq_no));
    expect(syncs()).toEqual([{ type: 'sync', convo_id: 'c1', since_seq: 201 }]);
    // live again: a new message is merged at once
    frame(c, { type: 'message.create', message: msg(202) });
    expect(seqs(c).at(-1)).toBe(202);
  });

  it('a page about a message near the end is live at once', async () => {
    const c = new ChatClient(api, session);
    c.open('c1', 190);
    await settle();
    expect(c.getState().views['c1']?.detached).toBe(false);
    expect(seqs(c).at(-1)).toBe(200);
    expect(syncs()).toEqual([{ type: 'sync', convo_id: 'c1', since_seq: 200 }]);
  });

  it('a loaded message is shown where it is, without asking the server', async () => {
    const c = new ChatClient(api, session);
    c.open('c1');
    await settle();
    const n = asked.length;
    c.open('c1', 180);
    await settle();
    expect(asked.length).toBe(n);
    expect(c.getState().openSeq).toBe(180);
    expect(c.getState().views['c1']?.detached).toBeFalsy();
  });

  it('opening it again without a message, or sending from there, brings back the newest messages', async () => {
    const c = new ChatClient(api, session);
    c.open('c1', 20);
    await settle();
    c.open('c1');
    expect(c.getState().openSeq).toBeNull();
    await settle();
    expect(asked.at(-1)).toEqual({ limit: 50 });
    expect(seqs(c)).toEqual(range(151, 200).map((m) => m.seq_no));
    expect(c.getState().views['c1']?.detached).toBe(false);
    c.open('c1', 20);
    await settle();
    expect(c.getState().views['c1']?.detached).toBe(true);
    expect(c.sendMessage('c1', 'from the past')).toBeNull();
    expect(c.getState().views['c1']?.detached).toBe(false);
    await settle();
    expect(seqs(c).at(-1)).toBe(200);
    expect(c.getState().logs['c1']?.pending.map((p) => p.content)).toEqual(['from the past']);
  });

  it('a page that comes after the conversation was opened elsewhere is dropped', async () => {
    const c = new ChatClient(api, session);
    c.open('c1', 20);
    c.open('c1', 120); // before the first page came
    await settle();
    expect(seqs(c)).toContain(120);
    expect(seqs(c)).not.toContain(20);
  });

  it('tells of each new message from someone else, once', async () => {
    const c = new ChatClient(api, session);
    const told: number[] = [];
    c.onIncoming((m) => told.push(m.seq_no));
    c.open('c1');
    await settle();
    frame(c, { type: 'message.create', message: msg(201) });
    frame(c, { type: 'message.create', message: { ...msg(202), sender_id: 'u_me' } });
    expect(told).toEqual([201]);
  });
});
