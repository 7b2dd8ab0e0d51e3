import { describe, expect, it } from 'vitest';
import { MAX_FRAME_BYTES, parseConversation, parseMessage, parseServerFrame, toMillis, validId, validReaction } from './protocol';

const message = {
  convo_id: 'c_abc',
  seq_no: 3,
  server_msg_id: 'c_abc:3',
  sender_id: 'u_bob',
  client_msg_id: 'k1',
  content: 'hi',
  created_at: '2026-11-27T10:00:00.000Z',
};

describe('server frames', () => {
  it('message.create, flat or with the message nested', () => {
    const flat = parseServerFrame(JSON.stringify({ type: 'message.create', ...message }));
    const nested = parseServerFrame(JSON.stringify({ type: 'message.create', message }));
    const want = { type: 'message.create', message: { ...message, created_at: Date.parse(message.created_at) } };
    expect(flat).toEqual(want);
    expect(nested).toEqual(want);
  });

  it('acks of each status', () => {
    expect(parseServerFrame('{"type":"ack","client_msg_id":"k1","status":"ok","server_msg_id":"c:1","seq_no":1}')).toEqual({
      type: 'ack',
      ack: { client_msg_id: 'k1', status: 'ok', server_msg_id: 'c:1', seq_no: 1 },
    });
    expect(
      parseServerFrame('{"type":"ack","client_msg_id":"k1","status":"error","error":{"code":"not_member","message":"no"}}'),
    ).toEqual({ type: 'ack', ack: { client_msg_id: 'k1', status: 'error', error: { code: 'not_member', message: 'no' } } });
    expect(parseServerFrame('{"type":"ack","client_msg_id":"k1","status":"maybe"}')).toBeNull();
  });

  it('typing in the forms a gateway may use', () => {
    for (const [state, typing] of [
      ['start', true],
      ['typing', true],
      [true, true],
      ['stop', false],
      ['idle', false],
      [false, false],
    ] as const) {
      expect(parseServerFrame(JSON.stringify({ type: 'typing', convo_id: 'c1', user_id: 'u1', state }))).toEqual({
        type: 'typing',
        convo_id: 'c1',
        user_id: 'u1',
        typing,
        expires_in_ms: null,
      });
    }
    expect(
      parseServerFrame('{"type":"typing","convo_id":"c1","user_id":"u1","state":"start","expires_in_ms":6000}'),
    ).toMatchObject({ typing: true, expires_in_ms: 6000 });
    expect(parseServerFrame('{"type":"typing","convo_id":"c1","user_id":"u1","state":"dancing"}')).toBeNull();
  });

  it('presence, read, delivery, notices and errors', () => {
    expect(parseServerFrame('{"type":"presence.update","user_id":"u1","status":"offline","last_seen":1700000000}')).toEqual({
      type: 'presence.update',
      user_id: 'u1',
      online: false,
      last_seen: 1700000000000,
    });
    expect(parseServerFrame('{"type":"presence.update","user_id":"u1","status":"away"}')).toBeNull();
    expect(parseServerFrame('{"type":"message.read","convo_id":"c1","user_id":"u1","seq_no":4}')).toEqual({
      type: 'message.read',
      convo_id: 'c1',
      user_id: 'u1',
      seq_no: 4,
    });
    expect(parseServerFrame('{"type":"message.delivery","convo_id":"c1","seq_no":4,"user_id":"u2"}')).toEqual({
      type: 'message.delivery',
      convo_id: 'c1',
      seq_no: 4,
      user_id: 'u2',
    });
    expect(parseServerFrame('{"type":"error","error":{"code":"bad_frame","message":"what"}}')).toEqual({
      type: 'error',
      code: 'bad_frame',
      message: 'what',
      in_reply_to: null,
      convo_id: null,
    });
    expect(
      parseServerFrame('{"type":"error","error":{"code":"rate_limited","message":"slow"},"in_reply_to":"sync","convo_id":"c1"}'),
    ).toMatchObject({ code: 'rate_limited', in_reply_to: 'sync', convo_id: 'c1' });
    expect(
      parseServerFrame(
        '{"type":"error","error":{"code":"not_visible","message":"no"},"in_reply_to":"presence.subscribe","user_ids":["u1",2,"u3"]}',
      ),
    ).toMatchObject({ code: 'not_visible', in_reply_to: 'presence.subscribe', user_ids: ['u1', 'u3'] });
    expect(parseServerFrame('{"type":"system.notice","code":"draining","message":"bye"}')).toEqual({
      type: 'system.notice',
      code: 'draining',
      message: 'bye',
    });
  });

  it('sync.complete, conversation.update, edits and deletes', () => {
    expect(parseServerFrame('{"type":"sync.complete","convo_id":"c1","up_to_seq":9,"sent":3,"more":true}')).toEqual({
      type: 'sync.complete',
      convo_id: 'c1',
      up_to_seq: 9,
      more: true,
    });
    expect(parseServerFrame('{"type":"conversation.update","convo_id":"c1","change":"members_added","members":["u2"],"actor_id":"u1","at":5}')).toEqual({
      type: 'conversation.update',
      update: { convo_id: 'c1', change: 'members_added', members: ['u2'], actor_id: 'u1' },
    });
    expect(parseServerFrame('{"type":"message.update","convo_id":"c1","seq_no":2,"content":"fixed"}')).toEqual({
      type: 'message.update',
      convo_id: 'c1',
      seq_no: 2,
      content: 'fixed',
    });
    expect(parseServerFrame('{"type":"message.delete","convo_id":"c1","seq_no":2}')).toEqual({
      type: 'message.delete',
      convo_id: 'c1',
      seq_no: 2,
    });
    // a backfilled copy says whether it was deleted or edited
    const m = parseServerFrame(JSON.stringify({ type: 'message.create', ...message, deleted: true, edited_at: 5, backfill: true }));
    expect(m).toMatchObject({ message: { deleted: true, edited: true } });
  });

  it('conversation.update, each change', () => {
    const upd = (o: object) => {
      const f = parseServerFrame(JSON.stringify({ type: 'conversation.update', convo_id: 'c1', actor_id: 'u1', at: 1, ...o }));
      return f?.type === 'conversation.update' ? f.update : f;
    };
    expect(upd({ change: 'created', title: 'plans', members: ['u1', 'u2'] })).toEqual({
      convo_id: 'c1',
      actor_id: 'u1',
      change: 'created',
      title: 'plans',
      members: ['u1', 'u2'],
    });
    expect(upd({ change: 'members_removed', members: ['u2'], left_seq: 7 })).toEqual({
      convo_id: 'c1',
      actor_id: 'u1',
      change: 'members_removed',
      members: ['u2'],
      left_seq: 7,
    });
    expect(upd({ change: 'members_removed', members: ['u1'], left_seq: 7, promoted: 'u3' })).toMatchObject({
      change: 'members_removed',
      members: ['u1'],
      promoted: 'u3',
    });
    // an older event without left_seq
    expect(upd({ change: 'members_removed', members: ['u2'] })).toMatchObject({ change: 'members_removed', left_seq: null });
    expect(upd({ change: 'updated', title: 'new' })).toEqual({ convo_id: 'c1', actor_id: 'u1', change: 'updated', title: 'new' });
    expect(upd({ change: 'updated', topic: '' })).toEqual({ convo_id: 'c1', actor_id: 'u1', change: 'updated', topic: '' });
    expect(upd({ change: 'updated', title: 't', topic: 'x' })).toMatchObject({ title: 't', topic: 'x' });
    expect(upd({ change: 'role', user_id: 'u2', role: 'admin' })).toEqual({
      convo_id: 'c1',
      actor_id: 'u1',
      change: 'role',
      user_id: 'u2',
      role: 'admin',
    });
    // what cannot be read is still a change of that conversation: "other" (the client reloads)
    for (const bad of [
      { change: 'role', user_id: 'u2', role: 'king' },
      { change: 'role', role: 'admin' },
      { change: 'members_removed', members: 'u2' },
      { change: 'members_removed', members: ['u2', 7] },
      { change: 'members_removed', members: ['u2'], promoted: 5 },
      { change: 'updated', title: 5 },
      { change: 'archived' },
      {},
    ]) {
      expect(upd(bad), JSON.stringify(bad)).toEqual({ convo_id: 'c1', actor_id: 'u1', change: 'other' });
    }
    expect(parseServerFrame('{"type":"conversation.update","change":"updated","title":"x"}')).toBeNull();
  });

  it('refuses what is not a frame it knows', () => {
    for (const bad of [
      'not json',
      '[]',
      'null',
      '{"type":"who.knows"}',
      '{"type":"message.create","convo_id":"c","seq_no":0,"sender_id":"u","content":"x"}', // seq 0
      '{"type":"message.create","convo_id":"c","seq_no":1.5,"sender_id":"u","content":"x"}',
      '{"type":"message.create","convo_id":"c","seq_no":"1","sender_id":"u","content":"x"}',
      '{"type":"message.create","convo_id":"has space","seq_no":1,"sender_id":"u","content":"x"}',
      '{"type":"message.create","convo_id":"c","seq_no":1,"sender_id":"u","content":7}',
      '{"type":"message.read","convo_id":"c","user_id":"u","seq_no":-1}',
    ]) {
      expect(parseServerFrame(bad), bad).toBeNull();
    }
    expect(parseServerFrame(JSON.stringify({ type: 'system.notice', message: 'x'.repeat(MAX_FRAME_BYTES) }))).toBeNull();
  });
});

describe('REST bodies', () => {
  it('a conversation with member ids or member objects', () => {
    const c = parseConversation({
      id: 'c1',
      title: 't',
      members: ['u1', { user_id: 'u2', username: 'bob', read_seq: 2 }, 42],
      last_seq: 2,
      unread: 1,
      last_message: { ...message, convo_id: 'c1', seq_no: 5 },
    });
    expect(c?.members).toEqual([{ user_id: 'u1' }, { user_id: 'u2', username: 'bob', read_seq: 2 }]);
    // last_seq is never behind the last message it comes with
    expect(c?.last_seq).toBe(5);
    expect(c?.last_activity).toBe(Date.parse(message.created_at));
    expect(parseConversation({ title: 'no id' })).toBeNull();
  });

  it('member_names give the members their usernames', () => {
    const c = parseConversation({
      id: 'c1',
      title: '',
      members: ['u1', 'u2', { user_id: 'u3', username: 'kept' }],
      member_names: { u1: 'alice', u3: 'other', u9: 'stranger', u2: 7 },
    });
    expect(c?.members).toEqual([{ user_id: 'u1', username: 'alice' }, { user_id: 'u2' }, { user_id: 'u3', username: 'kept' }]);
  });

  it('receipts give the members their read markers', () => {
    const c = parseConversation({
      id: 'c1',
      title: '',
      members: ['u1', 'u2', 'u3'],
      receipts: { u1: { read_seq: 4 }, u2: { read_seq: 'x' }, u9: { read_seq: 7 }, u3: 5 },
    });
    expect(c?.members).toEqual([{ user_id: 'u1', read_seq: 4 }, { user_id: 'u2' }, { user_id: 'u3' }]);
  });

  it('receipt_counts are kept with the seq_no they count', () => {
    const c = parseConversation({ id: 'c1', title: '', last_seq: 9, receipt_counts: { read: 60, delivered: 70 } });
    expect(c?.receipt_counts).toEqual({ seq: 9, read: 60, delivered: 70 });
    expect(parseConversation({ id: 'c1', title: '', receipt_counts: { read: 'x' } })?.receipt_counts).toBeUndefined();
  });

  it('receipts give the members their delivery marks too', () => {
    const c = parseConversation({
      id: 'c1',
      title: '',
      members: ['u1', 'u2'],
      receipts: { u1: { read_seq: 2, delivered_seq: 6 }, u2: { delivered_seq: -1 } },
    });
    expect(c?.members).toEqual([{ user_id: 'u1', read_seq: 2, delivered_seq: 6 }, { user_id: 'u2' }]);
  });

  it('topic and roles', () => {
    const c = parseConversation({
      id: 'c1',
      title: 't',
      topic: 'friday plans',
      members: ['u1', 'u2', 'u3', 'u4'],
      roles: { u1: 'owner', u2: 'admin', u3: 'member', u4: 'emperor', u9: 'owner' },
    });
    expect(c?.topic).toBe('friday plans');
    expect(c?.members).toEqual([
      { user_id: 'u1', role: 'owner' },
      { user_id: 'u2', role: 'admin' },
      { user_id: 'u3', role: 'member' },
      { user_id: 'u4' },
    ]);
    // an older server: no topic, no roles
    expect(parseConversation({ id: 'c1', title: 't', members: ['u1'] })).toMatchObject({ topic: '', members: [{ user_id: 'u1' }] });
  });

  it('a conversation is a group unless the server says direct', () => {
    expect(parseConversation({ id: 'd_x', kind: 'direct', title: '' })?.kind).toBe('direct');
    expect(parseConversation({ id: 'c_x', kind: 'group', title: 'g' })?.kind).toBe('group');
    expect(parseConversation({ id: 'c_x', title: 'older server' })?.kind).toBe('group');
    expect(parseConversation({ id: 'c_x', kind: 'something new', title: '' })?.kind).toBe('group');
  });

  it('ids and times', () => {
    expect(validId('u_' + 'a'.repeat(26))).toBe(true);
    expect(validId('')).toBe(false);
    expect(validId('x'.repeat(129))).toBe(false);
    expect(validId('a b')).toBe(false);
    expect(toMillis(1700000000)).toBe(1700000000000);
    expect(toMillis(1700000000123)).toBe(1700000000123);
    expect(toMillis('1700000000123')).toBe(1700000000123);
    expect(toMillis('nonsense')).toBeNull();
    expect(parseMessage({ ...message, created_at: undefined })?.created_at).toBe(0);
  });
});

describe('replies (reply_to)', () => {
  it('a live message.create carries reply_to; without it a message is no reply', () => {
    const f = parseServerFrame(JSON.stringify({ type: 'message.create', ...message, reply_to: 2 }));
    expect(f).toMatchObject({ type: 'message.create', message: { seq_no: 3, reply_to: 2 } });
    const plain = parseServerFrame(JSON.stringify({ type: 'message.create', ...message }));
    expect(plain?.type === 'message.create' && 'reply_to' in plain.message).toBe(false);
  });

  it('a sync backfill carries it too', () => {
    const f = parseServerFrame(JSON.stringify({ type: 'message.create', backfill: true, message: { ...message, reply_to: 1 } }));
    expect(f).toMatchObject({ type: 'message.create', message: { reply_to: 1 } });
  });

  it('history: an integer or null, beside edit_count', () => {
    expect(parseMessage({ ...message, reply_to: 1, edit_count: 0, edited_at: null })).toEqual({
      ...message,
      created_at: Date.parse(message.created_at),
      reply_to: 1,
    });
    const none = parseMessage({ ...message, reply_to: null, edit_count: 0 });
    expect(none).not.toBeNull();
    expect(none && 'reply_to' in none).toBe(false);
    expect(parseMessage({ ...message, reply_to: null, edit_count: 2 })?.edited).toBe(true);
  });

  it('a reply_to of the wrong type refuses the message; one that is not earlier is dropped', () => {
    expect(parseMessage({ ...message, reply_to: '2' })).toBeNull();
    expect(parseMessage({ ...message, reply_to: 1.5 })).toBeNull();
    expect(parseMessage({ ...message, reply_to: -1 })).toBeNull();
    expect(parseMessage({ ...message, reply_to: {} })).toBeNull();
    for (const reply_to of [0, 3, 4]) {
      const m = parseMessage({ ...message, reply_to });
      expect(m).not.toBeNull();
      expect(m?.reply_to).toBeUndefined();
    }
  });

  it('a tombstone keeps its reply_to', () => {
    expect(parseMessage({ ...message, content: '', deleted: true, reply_to: 2 })).toMatchObject({ deleted: true, reply_to: 2 });
  });

  it('a history tombstone says deleted_at (not deleted: true)', () => {
    const t = { ...message, content: '', reply_to: null, edited_at: null, edit_count: 0, deleted_at: '2026-11-27T10:05:00.000Z' };
    expect(parseMessage(t)?.deleted).toBe(true);
    expect(parseMessage({ ...t, deleted_at: null })?.deleted).toBeUndefined();
  });
});

describe('reactions', () => {
  const counts = [
    { emoji: '👍', count: 2 },
    { emoji: '❤️', count: 1 },
  ];

  it('a history message carries its reactions and mine; a tombstone none', () => {
    expect(parseMessage({ ...message, reactions: counts, my_reaction: '👍' })).toMatchObject({ reactions: counts, my_reaction: '👍' });
    expect(parseMessage({ ...message, reactions: [], my_reaction: null })).toMatchObject({ reactions: [], my_reaction: null });
    expect(parseMessage({ ...message, deleted_at: '2026-11-27T10:00:00Z', reactions: counts, my_reaction: '👍' })).toMatchObject({
      deleted: true,
      reactions: [],
      my_reaction: null,
    });
    // not said (a live message, a sync): absent, so that what is known stays
    const plain = parseMessage(message);
    expect(plain && 'reactions' in plain).toBe(false);
    expect(plain && 'my_reaction' in plain).toBe(false);
  });

  it('malformed reactions are ignored, never the message', () => {
    for (const reactions of [{}, 'x', [{ emoji: '👍' }], [{ emoji: '👍', count: 0 }], [{ emoji: 'a b', count: 1 }], [{ emoji: '👍', count: 1 }, { emoji: '👍', count: 1 }]]) {
      const m = parseMessage({ ...message, reactions, my_reaction: 7 });
      expect(m).not.toBeNull();
      expect(m && 'reactions' in m).toBe(false);
      expect(m && 'my_reaction' in m).toBe(false);
    }
  });

  it('message.reaction frames', () => {
    const f = { type: 'message.reaction', convo_id: 'c1', seq_no: 4, user_id: 'u1', emoji: '👍', previous: null, reactions: counts, at: 1 };
    expect(parseServerFrame(JSON.stringify(f))).toEqual({ type: 'message.reaction', convo_id: 'c1', seq_no: 4, user_id: 'u1', emoji: '👍', reactions: counts });
    expect(parseServerFrame(JSON.stringify({ ...f, emoji: null, reactions: [] }))).toMatchObject({ emoji: null, reactions: [] });
    expect(parseServerFrame(JSON.stringify({ ...f, emoji: undefined }))).toMatchObject({ emoji: null });
    expect(parseServerFrame(JSON.stringify({ ...f, reactions: undefined }))).toBeNull();
    expect(parseServerFrame(JSON.stringify({ ...f, emoji: 3 }))).toBeNull();
    expect(parseServerFrame(JSON.stringify({ ...f, seq_no: 0 }))).toBeNull();
    expect(parseServerFrame(JSON.stringify({ ...f, reactions: [{ emoji: '👍', count: -1 }] }))).toBeNull();
  });

  it('what counts as a reaction is what the server takes', () => {
    for (const ok of ['👍', '❤️', '👨‍👩‍👧‍👦', '+1', 'x'.repeat(16)]) expect(validReaction(ok)).toBe(true);
    for (const bad of ['', ' ', '👍 ', 'a\tb', '\u0085', '\u00a0', '\u2028', 'x'.repeat(17), '😀'.repeat(17), 7, null]) {
      expect(validReaction(bad)).toBe(false);
    }
  });
});
