import { describe, expect, it } from 'vitest';
import type { Conversation, ConversationUpdate, Message } from './protocol';
import {
  abilitiesOf,
  addPending,
  applyAck,
  applyConversationUpdate,
  applyDelivered,
  applyRead,
  applyReaction,
  contiguousTop,
  emptyLog,
  emptyReceipts,
  findGap,
  markReachedStart,
  messageAt,
  mergeMessages,
  missingSeqs,
  noteKnownLast,
  oldestSeq,
  patchMessage,
  roleOf,
  seenByText,
  tickFor,
  updatePending,
  type ConvoLog,
  type PendingMessage,
} from './store';

const ME = 'u_me';
const BOB = 'u_bob';
const C = 'c_one';

function msg(seq: number, sender = BOB, client = `k${seq}`, content = `text ${seq}`): Message {
  return {
    convo_id: C,
    seq_no: seq,
    server_msg_id: `${C}:${seq}`,
    sender_id: sender,
    client_msg_id: client,
    content,
    created_at: 1_700_000_000_000 + seq,
  };
}

function pending(client: string, content = `mine ${client}`): PendingMessage {
  return { client_msg_id: client, convo_id: C, content, created_at: 1, state: 'sending', attempts: 1 };
}

const seqs = (log: ConvoLog) => log.messages.map((m) => m.seq_no);

describe('ordering by seq_no', () => {
  it('keeps messages sorted whatever order they arrive in', () => {
    let log = emptyLog;
    for (const s of [5, 2, 9, 1, 7, 3]) log = mergeMessages(log, [msg(s)], ME);
    expect(seqs(log)).toEqual([1, 2, 3, 5, 7, 9]);
    log = mergeMessages(log, [msg(8), msg(4), msg(6)], ME);
    expect(seqs(log)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('an older history page goes before the loaded messages', () => {
    let log = mergeMessages(emptyLog, [msg(51), msg(52), msg(53)], ME);
    expect(oldestSeq(log)).toBe(51);
    expect(log.reachedStart).toBe(false);
    const page = Array.from({ length: 50 }, (_, i) => msg(i + 1));
    log = mergeMessages(log, page, ME);
    expect(seqs(log)).toEqual(Array.from({ length: 53 }, (_, i) => i + 1));
    expect(log.reachedStart).toBe(true);
    expect(oldestSeq(log)).toBe(1);
  });

  it('reachedStart can come from history with no older page', () => {
    const log = markReachedStart(mergeMessages(emptyLog, [msg(3)], ME));
    expect(log.reachedStart).toBe(true);
  });
});

describe('dedupe', () => {
  it('a message seen live and again in history is kept once', () => {
    let log = mergeMessages(emptyLog, [msg(1), msg(2), msg(3)], ME); // live
    const before = log;
    log = mergeMessages(log, [msg(2), msg(3)], ME); // the same, from a history page
    expect(log).toBe(before); // unchanged: the same value, so React does not even re-render
    log = mergeMessages(log, [msg(1), msg(2), msg(3), msg(4)], ME); // a sync overlapping
    expect(seqs(log)).toEqual([1, 2, 3, 4]);
  });

  it('edits and deletes patch the loaded message in place', () => {
    let log = mergeMessages(emptyLog, [msg(1), msg(2)], ME);
    log = patchMessage(log, 2, { content: 'better' });
    expect(log.messages[1]).toMatchObject({ seq_no: 2, content: 'better', edited: true });
    log = patchMessage(log, 1, { deleted: true });
    expect(log.messages[0]).toMatchObject({ seq_no: 1, content: '', deleted: true });
    expect(patchMessage(log, 7, { deleted: true })).toBe(log); // not loaded: nothing to patch
    // the deleted copy from history does not bring the text back, nor add a message
    log = mergeMessages(log, [{ ...msg(1), content: '', deleted: true }], ME);
    expect(seqs(log)).toEqual([1, 2]);
    expect(log.messages[0]?.deleted).toBe(true);
  });

  it('an edited copy of a seq_no replaces the old one', () => {
    let log = mergeMessages(emptyLog, [msg(1), msg(2)], ME);
    log = mergeMessages(log, [msg(2, BOB, 'k2', 'edited')], ME);
    expect(log.messages.map((m) => m.content)).toEqual(['text 1', 'edited']);
  });

  it('a retried send acked twice (ok, then duplicate for the retry) makes one message', () => {
    let log = addPending(emptyLog, pending('m1', 'hello'));
    log = applyAck(log, { client_msg_id: 'm1', status: 'ok', seq_no: 1, server_msg_id: `${C}:1` }, ME);
    log = applyAck(
      log,
      { client_msg_id: 'm1', status: 'duplicate', seq_no: 1, server_msg_id: `${C}:1` },
      ME,
    );
    expect(seqs(log)).toEqual([1]);
    expect(log.pending).toEqual([]);
    expect(log.messages[0]?.content).toBe('hello');
  });

  it('when the first ack was lost with the socket, the duplicate ack of the retry places the bubble', () => {
    let log = addPending(emptyLog, pending('m1', 'hello'));
    log = updatePending(log, 'm1', { state: 'queued' }); // the socket dropped
    log = updatePending(log, 'm1', { state: 'sending', attempts: 2 }); // resent, same client_msg_id
    log = applyAck(
      log,
      { client_msg_id: 'm1', status: 'duplicate', seq_no: 4, server_msg_id: `${C}:4` },
      ME,
    );
    expect(seqs(log)).toEqual([4]);
    expect(log.pending).toEqual([]);
    // and its message.create, seen live or in history, is the same seq_no: still one message
    log = mergeMessages(log, [msg(4, ME, 'm1', 'hello')], ME);
    expect(seqs(log)).toEqual([4]);
  });

  it('adding the same pending client_msg_id twice keeps one bubble', () => {
    let log = addPending(emptyLog, pending('m1'));
    log = addPending(log, pending('m1'));
    expect(log.pending).toHaveLength(1);
  });

  it('my message arriving as message.create settles its bubble even before the ack', () => {
    let log = addPending(emptyLog, pending('m7', 'hi'));
    log = mergeMessages(log, [msg(1, ME, 'm7', 'hi')], ME);
    expect(log.pending).toEqual([]);
    expect(seqs(log)).toEqual([1]);
    // the ack comes after: nothing changes but knownLast (already 1)
    const after = applyAck(log, { client_msg_id: 'm7', status: 'ok', seq_no: 1 }, ME);
    expect(after).toBe(log);
  });

  it('another user with the same client_msg_id does not settle my bubble', () => {
    let log = addPending(emptyLog, pending('same'));
    log = mergeMessages(log, [msg(1, BOB, 'same')], ME);
    expect(log.pending).toHaveLength(1);
  });
});

describe('optimistic bubble -> ack', () => {
  it('becomes the message at the acked seq_no', () => {
    let log = mergeMessages(emptyLog, [msg(1), msg(2)], ME);
    log = addPending(log, pending('a', 'first'));
    log = addPending(log, pending('b', 'second'));
    expect(log.pending.map((p) => p.client_msg_id)).toEqual(['a', 'b']);
    log = applyAck(log, { client_msg_id: 'a', status: 'ok', seq_no: 3, server_msg_id: `${C}:3` }, ME);
    expect(seqs(log)).toEqual([1, 2, 3]);
    expect(log.messages[2]).toMatchObject({ sender_id: ME, client_msg_id: 'a', content: 'first' });
    expect(log.pending.map((p) => p.client_msg_id)).toEqual(['b']);
    expect(log.knownLast).toBe(3);
  });

  it('an ack after the message.create only removes the bubble', () => {
    let log = addPending(emptyLog, pending('a', 'x'));
    log = mergeMessages(log, [msg(1), msg(2, BOB)], ME);
    log = applyAck(log, { client_msg_id: 'a', status: 'ok', seq_no: 3 }, ME);
    log = mergeMessages(log, [msg(3, ME, 'a', 'x')], ME);
    expect(seqs(log)).toEqual([1, 2, 3]);
    expect(log.pending).toEqual([]);
  });

  it('an error ack marks the bubble failed with the reason, and a retry clears it', () => {
    let log = addPending(emptyLog, pending('a'));
    log = applyAck(
      log,
      { client_msg_id: 'a', status: 'error', error: { code: 'not_member', message: 'not a member' } },
      ME,
    );
    expect(log.pending[0]).toMatchObject({ state: 'failed', error: 'not a member' });
    log = updatePending(log, 'a', { state: 'sending', attempts: 2 });
    expect(log.pending[0]?.state).toBe('sending');
    expect(log.pending[0]?.error).toBeUndefined();
  });

  it('an ack for a bubble of another tab only raises knownLast', () => {
    const log = applyAck(mergeMessages(emptyLog, [msg(1)], ME), { client_msg_id: 'zz', status: 'ok', seq_no: 2 }, ME);
    expect(seqs(log)).toEqual([1]);
    expect(findGap(log)).toEqual({ sinceSeq: 1, upTo: 2 });
  });
});

describe('gap detection and backfill', () => {
  it('no gap while messages are contiguous', () => {
    const log = mergeMessages(emptyLog, [msg(4), msg(5), msg(6)], ME);
    expect(contiguousTop(log)).toBe(6);
    expect(findGap(log)).toBeNull();
  });

  it('a live message past a hole is a gap from the contiguous top', () => {
    let log = mergeMessages(emptyLog, [msg(1), msg(2), msg(3)], ME);
    log = mergeMessages(log, [msg(6)], ME);
    expect(contiguousTop(log)).toBe(3);
    expect(missingSeqs(log)).toEqual([4, 5]);
    expect(findGap(log)).toEqual({ sinceSeq: 3, upTo: 6 });
    // the backfill (GET ...?since_seq=3) returns 4..6, 6 again included
    log = mergeMessages(log, [msg(4), msg(5), msg(6)], ME);
    expect(findGap(log)).toBeNull();
    expect(seqs(log)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('a last_seq from the conversation list reveals messages missed while away', () => {
    let log = mergeMessages(emptyLog, [msg(1), msg(2)], ME);
    log = noteKnownLast(log, 5);
    expect(findGap(log)).toEqual({ sinceSeq: 2, upTo: 5 });
    expect(noteKnownLast(log, 4)).toBe(log);
  });

  it('several holes: the first one bounds what is contiguous', () => {
    const log = mergeMessages(emptyLog, [1, 2, 4, 5, 7, 8].map((s) => msg(s)), ME);
    expect(contiguousTop(log)).toBe(2);
    expect(missingSeqs(log)).toEqual([3, 6]);
    expect(findGap(log)).toEqual({ sinceSeq: 2, upTo: 8 });
  });

  it('nothing loaded is not a gap (the client loads the latest page instead)', () => {
    expect(findGap(noteKnownLast(emptyLog, 10))).toBeNull();
    expect(contiguousTop(emptyLog)).toBe(0);
  });

  it('a pending bubble is not a hole', () => {
    let log = mergeMessages(emptyLog, [msg(1)], ME);
    log = addPending(log, pending('p'));
    expect(findGap(log)).toBeNull();
  });
});

describe('ticks', () => {
  it('sent, then delivered, then read by another member', () => {
    let r = emptyReceipts;
    expect(tickFor(3, r, ME)).toBe('sent');
    r = applyDelivered(r, 3);
    expect(tickFor(3, r, ME)).toBe('delivered');
    expect(tickFor(4, r, ME)).toBe('sent');
    r = applyRead(r, BOB, 3);
    expect(tickFor(2, r, ME)).toBe('read');
    expect(tickFor(3, r, ME)).toBe('read');
    expect(tickFor(4, r, ME)).toBe('sent');
  });

  it('my own read marker is not a read tick, and markers never move back', () => {
    let r = applyRead(emptyReceipts, ME, 9);
    expect(tickFor(5, r, ME)).toBe('sent');
    r = applyRead(r, BOB, 6);
    const same = applyRead(r, BOB, 4);
    expect(same).toBe(r);
    expect(applyDelivered(applyDelivered(emptyReceipts, 5), 2).delivered).toBe(5);
  });
});

describe('conversation.update frames on the conversation list', () => {
  const CAROL = 'u_carol';
  const DAVE = 'u_dave';
  function convo(id = C, over: Partial<Conversation> = {}): Conversation {
    return {
      id,
      kind: 'group',
      title: 'plans',
      topic: '',
      members: [
        { user_id: ME, username: 'me', role: 'owner' },
        { user_id: BOB, username: 'bob', role: 'member' },
        { user_id: CAROL, username: 'carol', role: 'admin' },
      ],
      last_seq: 4,
      unread: 0,
      last_message: null,
      last_activity: 1,
      ...over,
    };
  }
  const other = convo('c_other', { title: 'other' });
  const list = [convo(), other];
  const apply = (u: ConversationUpdate, l: readonly Conversation[] = list, me = ME) => applyConversationUpdate(l, u, me);
  const members = (l: readonly Conversation[], id = C) => l.find((c) => c.id === id)?.members.map((m) => `${m.user_id}:${m.role ?? '-'}`);

  it('updated: a new title, a new topic, both, or a cleared topic', () => {
    let r = apply({ convo_id: C, change: 'updated', title: 'new plans' });
    expect(r.conversations[0]).toMatchObject({ title: 'new plans', topic: '' });
    expect(r.conversations[1]).toBe(other); // the others are left alone
    expect(r).toMatchObject({ left: false, reload: false });
    r = apply({ convo_id: C, change: 'updated', topic: 'friday' }, r.conversations);
    expect(r.conversations[0]).toMatchObject({ title: 'new plans', topic: 'friday' });
    r = apply({ convo_id: C, change: 'updated', title: 'x', topic: 'y' }, r.conversations);
    expect(r.conversations[0]).toMatchObject({ title: 'x', topic: 'y' });
    r = apply({ convo_id: C, change: 'updated', topic: '' }, r.conversations);
    expect(r.conversations[0]).toMatchObject({ title: 'x', topic: '' });
    // the same values again: the same list, so nothing re-renders
    expect(apply({ convo_id: C, change: 'updated', topic: '' }, r.conversations).conversations).toBe(r.conversations);
    // a conversation the list does not hold: ask for the list
    expect(apply({ convo_id: 'c_new', change: 'updated', title: 't' })).toMatchObject({ conversations: list, reload: true });
  });

  it('role: a member becomes admin, owner, or a plain member again', () => {
    let r = apply({ convo_id: C, change: 'role', user_id: BOB, role: 'admin' });
    expect(members(r.conversations)).toEqual([`${ME}:owner`, `${BOB}:admin`, `${CAROL}:admin`]);
    r = apply({ convo_id: C, change: 'role', user_id: CAROL, role: 'member' }, r.conversations);
    r = apply({ convo_id: C, change: 'role', user_id: BOB, role: 'owner' }, r.conversations);
    expect(members(r.conversations)).toEqual([`${ME}:owner`, `${BOB}:owner`, `${CAROL}:member`]);
    expect(roleOf(r.conversations[0] as Conversation, BOB)).toBe('owner');
    expect(apply({ convo_id: C, change: 'role', user_id: BOB, role: 'owner' }, r.conversations).conversations).toBe(r.conversations);
    // a role for someone the list does not show as a member yet: ask for the list
    expect(apply({ convo_id: C, change: 'role', user_id: DAVE, role: 'admin' })).toMatchObject({ conversations: list, reload: true });
  });

  it('members_added: new members are plain members, once', () => {
    const r = apply({ convo_id: C, change: 'members_added', members: [DAVE, BOB] });
    expect(members(r.conversations)).toEqual([`${ME}:owner`, `${BOB}:member`, `${CAROL}:admin`, `${DAVE}:member`]);
    expect(r).toMatchObject({ left: false, reload: false });
    expect(apply({ convo_id: C, change: 'members_added', members: [DAVE] }, r.conversations).conversations).toBe(r.conversations);
    // I was added to a conversation the list does not hold: ask for the list
    expect(apply({ convo_id: 'c_new', change: 'members_added', members: [ME] })).toMatchObject({ conversations: list, reload: true });
  });

  it('members_removed: the members go, their roles with them', () => {
    const r = apply({ convo_id: C, change: 'members_removed', members: [CAROL], left_seq: 4 });
    expect(members(r.conversations)).toEqual([`${ME}:owner`, `${BOB}:member`]);
    expect(r).toMatchObject({ left: false, reload: false });
    expect(roleOf(r.conversations[0] as Conversation, CAROL)).toBeNull();
    // not a member (any more): nothing changes
    expect(apply({ convo_id: C, change: 'members_removed', members: [DAVE], left_seq: 4 }).conversations).toBe(list);
  });

  it('members_removed with promoted: the last owner left and another member is the owner now', () => {
    const mine = convo(C, {
      members: [
        { user_id: ME, role: 'member' },
        { user_id: BOB, role: 'owner' },
        { user_id: CAROL, role: 'admin' },
      ],
    });
    const r = apply({ convo_id: C, change: 'members_removed', members: [BOB], left_seq: 9, promoted: CAROL }, [mine]);
    expect(members(r.conversations)).toEqual([`${ME}:member`, `${CAROL}:owner`]);
    expect(r.reload).toBe(false);
    // promoted to owner, me
    const r2 = apply({ convo_id: C, change: 'members_removed', members: [BOB, CAROL], left_seq: 9, promoted: ME }, [mine]);
    expect(members(r2.conversations)).toEqual([`${ME}:owner`]);
    expect(abilitiesOf(r2.conversations[0] as Conversation, ME).edit).toBe(true);
  });

  it('members_removed with me among them (removed, or I left): the conversation leaves my list', () => {
    const r = apply({ convo_id: C, change: 'members_removed', members: [ME], left_seq: 4, actor_id: CAROL });
    expect(r.left).toBe(true);
    expect(r.reload).toBe(false);
    expect(r.conversations.map((c) => c.id)).toEqual(['c_other']);
    // again (the REST answer and the frame both say it): nothing more to do
    const again = apply({ convo_id: C, change: 'members_removed', members: [ME], left_seq: 4 }, r.conversations);
    expect(again).toMatchObject({ conversations: r.conversations, left: false, reload: false });
  });

  it('created: only a conversation the list does not hold asks for the list', () => {
    expect(apply({ convo_id: C, change: 'created', members: [ME, BOB] })).toMatchObject({ conversations: list, reload: false });
    expect(apply({ convo_id: 'c_new', change: 'created', title: 't', members: [ME, BOB] })).toMatchObject({ conversations: list, reload: true });
  });

  it('a change this client cannot read asks for the list', () => {
    expect(apply({ convo_id: C, change: 'other' })).toMatchObject({ conversations: list, left: false, reload: true });
  });
});

describe('what my role lets me do', () => {
  const group = (mine: 'owner' | 'admin' | 'member'): Conversation => ({
    id: C,
    kind: 'group',
    title: 't',
    topic: '',
    members: [
      { user_id: ME, role: mine },
      { user_id: 'u_owner', role: 'owner' },
      { user_id: 'u_admin', role: 'admin' },
      { user_id: 'u_member' }, // no role given: a plain member
    ],
    last_seq: 0,
    unread: 0,
    last_message: null,
    last_activity: 0,
  });

  it('owners do everything, to anyone but themselves', () => {
    const can = abilitiesOf(group('owner'), ME);
    expect([can.edit, can.add, can.leave]).toEqual([true, true, true]);
    expect(['u_owner', 'u_admin', 'u_member', ME].map((u) => can.remove(u))).toEqual([true, true, true, false]);
    expect(can.rolesFor('u_member')).toEqual(['owner', 'admin']);
    expect(can.rolesFor('u_admin')).toEqual(['owner', 'member']);
    expect(can.rolesFor('u_owner')).toEqual(['admin', 'member']);
    expect(can.rolesFor(ME)).toEqual([]);
    expect(can.rolesFor('u_stranger')).toEqual([]);
  });

  it('admins manage admins and members, never owners', () => {
    const can = abilitiesOf(group('admin'), ME);
    expect([can.edit, can.add, can.leave]).toEqual([true, true, true]);
    expect(['u_owner', 'u_admin', 'u_member'].map((u) => can.remove(u))).toEqual([false, true, true]);
    expect(can.rolesFor('u_member')).toEqual(['admin']);
    expect(can.rolesFor('u_admin')).toEqual(['member']);
    expect(can.rolesFor('u_owner')).toEqual([]);
  });

  it('plain members only leave', () => {
    const can = abilitiesOf(group('member'), ME);
    expect([can.edit, can.add, can.leave]).toEqual([false, false, true]);
    expect(['u_owner', 'u_admin', 'u_member'].map((u) => can.remove(u))).toEqual([false, false, false]);
    expect(can.rolesFor('u_member')).toEqual([]);
  });

  it('a direct conversation has nothing to manage, and no leaving', () => {
    const can = abilitiesOf({ ...group('owner'), id: 'd_x', kind: 'direct' }, ME);
    expect([can.edit, can.add, can.leave, can.remove('u_member')]).toEqual([false, false, false, false]);
    expect(can.rolesFor('u_member')).toEqual([]);
  });
});

describe('replies (reply_to)', () => {
  const reply = (seq: number, to: number, sender = BOB): Message => ({ ...msg(seq, sender), reply_to: to });

  it('messageAt finds a loaded message by seq_no', () => {
    const log = mergeMessages(emptyLog, [msg(1), msg(2), reply(4, 1)], ME);
    expect(messageAt(log, 4)?.reply_to).toBe(1);
    expect(messageAt(log, 3)).toBeUndefined();
  });

  it('is kept through merges from any source, and a copy without it does not drop it', () => {
    let log = mergeMessages(emptyLog, [msg(1), reply(2, 1)], ME); // live
    const before = log;
    log = mergeMessages(log, [reply(2, 1)], ME); // the same from history
    expect(log).toBe(before);
    log = mergeMessages(log, [msg(2)], ME); // a source that does not carry reply_to
    expect(log).toBe(before);
    log = mergeMessages(log, [{ ...msg(2), content: 'edited text' }], ME); // an edit without it
    expect(messageAt(log, 2)).toMatchObject({ content: 'edited text', reply_to: 1 });
  });

  it('a copy that says what the message quotes fills it in', () => {
    let log = mergeMessages(emptyLog, [msg(1), msg(2)], ME);
    log = mergeMessages(log, [reply(2, 1)], ME);
    expect(messageAt(log, 2)?.reply_to).toBe(1);
  });

  it('the acked bubble becomes a message with the same reply_to', () => {
    let log = mergeMessages(emptyLog, [msg(1)], ME);
    log = addPending(log, { ...pending('r1', 'answer'), reply_to: 1 });
    log = applyAck(log, { client_msg_id: 'r1', status: 'ok', seq_no: 2, server_msg_id: `${C}:2` }, ME);
    expect(log.pending).toEqual([]);
    expect(messageAt(log, 2)).toMatchObject({ content: 'answer', sender_id: ME, reply_to: 1 });
  });

  it('a refused reply (no_such_message) leaves the bubble failed, reply_to kept for a retry', () => {
    let log = addPending(emptyLog, { ...pending('r2'), reply_to: 9 });
    log = applyAck(log, { client_msg_id: 'r2', status: 'error', error: { code: 'no_such_message', message: 'no' } }, ME);
    expect(log.pending[0]).toMatchObject({ state: 'failed', reply_to: 9 });
    log = updatePending(log, 'r2', { state: 'sending', attempts: 2 });
    expect(log.pending[0]?.reply_to).toBe(9);
  });

  it('deleting the quoted message or the reply keeps the reply_to', () => {
    let log = mergeMessages(emptyLog, [msg(1), reply(2, 1)], ME);
    log = patchMessage(log, 1, { deleted: true });
    expect(messageAt(log, 1)?.deleted).toBe(true);
    expect(messageAt(log, 2)?.reply_to).toBe(1);
    log = patchMessage(log, 2, { content: 'changed' });
    expect(messageAt(log, 2)).toMatchObject({ reply_to: 1, edited: true });
  });
});

describe('reactions', () => {
  const thumbs2 = [{ emoji: '👍', count: 2 }];
  const withReactions = (seq: number, reactions: { emoji: string; count: number }[], my_reaction: string | null): Message => ({
    ...msg(seq),
    reactions,
    my_reaction,
  });

  it('a frame sets the message\'s reactions as they are, mine only when told', () => {
    let log = mergeMessages(emptyLog, [withReactions(1, [], null), msg(2)], ME);
    log = applyReaction(log, 1, [{ emoji: '👍', count: 1 }]); // someone else's
    expect(messageAt(log, 1)).toMatchObject({ reactions: [{ emoji: '👍', count: 1 }], my_reaction: null });
    log = applyReaction(log, 1, [{ emoji: '❤️', count: 1 }, { emoji: '👍', count: 1 }], '❤️'); // mine
    expect(messageAt(log, 1)).toMatchObject({ reactions: [{ emoji: '❤️', count: 1 }, { emoji: '👍', count: 1 }], my_reaction: '❤️' });
    log = applyReaction(log, 1, [{ emoji: '👍', count: 1 }], null); // mine removed
    expect(messageAt(log, 1)).toMatchObject({ reactions: [{ emoji: '👍', count: 1 }], my_reaction: null });
    // a message with nothing known yet gets the frame's
    log = applyReaction(log, 2, thumbs2);
    expect(messageAt(log, 2)?.reactions).toEqual(thumbs2);
    expect(messageAt(log, 2)?.my_reaction).toBeUndefined();
  });

  it('the same frame twice, or one for a message not loaded, changes nothing', () => {
    let log = mergeMessages(emptyLog, [withReactions(1, thumbs2, '👍')], ME);
    const before = log;
    log = applyReaction(log, 1, [{ emoji: '👍', count: 2 }], '👍');
    expect(log).toBe(before);
    log = applyReaction(log, 1, [{ emoji: '👍', count: 2 }]);
    expect(log).toBe(before);
    expect(applyReaction(log, 7, thumbs2, '👍')).toBe(before);
  });

  it('a copy without reactions (live, sync) keeps them; a history copy with others replaces them', () => {
    let log = mergeMessages(emptyLog, [withReactions(1, thumbs2, '👍')], ME);
    const before = log;
    expect(mergeMessages(log, [msg(1)], ME)).toBe(before);
    log = mergeMessages(log, [{ ...msg(1), content: 'edited' }], ME); // an edit without them
    expect(messageAt(log, 1)).toMatchObject({ content: 'edited', reactions: thumbs2, my_reaction: '👍' });
    log = mergeMessages(log, [{ ...withReactions(1, [{ emoji: '🎉', count: 1 }], null), content: 'edited' }], ME);
    expect(messageAt(log, 1)).toMatchObject({ reactions: [{ emoji: '🎉', count: 1 }], my_reaction: null });
  });

  it('the server\'s order is kept (no sorting on the client)', () => {
    const order = [{ emoji: '😂', count: 3 }, { emoji: '👍', count: 1 }, { emoji: '🎉', count: 1 }];
    const log = applyReaction(mergeMessages(emptyLog, [msg(1)], ME), 1, order);
    expect(messageAt(log, 1)?.reactions?.map((r) => r.emoji)).toEqual(['😂', '👍', '🎉']);
  });

  it('a deleted message loses its reactions and takes no more', () => {
    let log = mergeMessages(emptyLog, [withReactions(1, thumbs2, '👍'), withReactions(2, thumbs2, null)], ME);
    log = patchMessage(log, 1, { deleted: true });
    expect(messageAt(log, 1)).toMatchObject({ deleted: true, reactions: [], my_reaction: null });
    const before = log;
    expect(applyReaction(log, 1, thumbs2, '👍')).toBe(before);
    // a tombstone from a sync (deleted, no reactions said) clears them too
    log = mergeMessages(log, [{ ...msg(2), content: '', deleted: true }], ME);
    expect(messageAt(log, 2)).toMatchObject({ deleted: true, reactions: [], my_reaction: null });
  });
});

describe('"seen by" under my latest message in a group', () => {
  it('names up to three, then counts the rest; the server\'s count wins when larger', () => {
    expect(seenByText([], 0)).toBe('');
    expect(seenByText(['ann'], 0)).toBe('Seen by ann');
    expect(seenByText(['ann', 'bob', 'cat'], 0)).toBe('Seen by ann, bob, cat');
    expect(seenByText(['ann', 'bob', 'cat', 'dan'], 0)).toBe('Seen by ann, bob, cat and 1 more');
    // 50 names in the receipts, 120 counted
    const fifty = Array.from({ length: 50 }, (_, i) => `u${i}`);
    expect(seenByText(fifty, 120)).toBe('Seen by u0, u1, u2 and 117 more');
    // the count is older than a live read: the names win
    expect(seenByText(['ann', 'bob'], 1)).toBe('Seen by ann, bob');
    expect(seenByText([], 4)).toBe('Seen by 4');
    expect(seenByText(['ann'], 2)).toBe('Seen by ann and 1 more');
  });
});

describe('attachments', () => {
  const file = { id: 'a_1', key: 'k', name: 'r.pdf', size: 3, content_type: 'application/pdf', width: null, height: null, thumb_key: null };

  it('a copy that does not carry them keeps them; a tombstone has none', () => {
    let log = mergeMessages(emptyLog, [{ ...msg(1), attachments: [file] }], ME);
    // a live copy (a frame of another tab, a sync) that does not say
    log = mergeMessages(log, [msg(1)], ME);
    expect(messageAt(log, 1)?.attachments).toEqual([file]);
    log = mergeMessages(log, [{ ...msg(1), content: '', deleted: true }], ME);
    expect(messageAt(log, 1)?.attachments).toEqual([]);
    const other = patchMessage(mergeMessages(emptyLog, [{ ...msg(2), attachments: [file] }], ME), 2, { deleted: true });
    expect(messageAt(other, 2)?.attachments).toEqual([]);
  });

  it('the ack turns my bubble into a message with its files', () => {
    const p: PendingMessage = { ...pending('k9', ''), attachments: [file] };
    const log = applyAck(addPending(emptyLog, p), { client_msg_id: 'k9', status: 'ok', seq_no: 1, server_msg_id: 's' }, ME);
    expect(log.pending).toEqual([]);
    expect(messageAt(log, 1)).toMatchObject({ content: '', attachments: [file], sender_id: ME });
  });
});
