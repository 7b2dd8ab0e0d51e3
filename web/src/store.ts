// The client's message store for one conversation: pure functions over immutable values,
// so that React can compare snapshots and the rules can be tested without a browser.
//
// What it keeps true:
// - `messages` is sorted by seq_no and holds each seq_no once, whichever way a message came
//   (live message.create, the sender's ack, a sync, a history page, a backfill);
// - a message sent from here is an optimistic bubble in `pending` until its ack (or its
//   message.create) arrives, and then it is a message at its seq_no, never both;
// - `knownLast` is the highest seq_no the client knows exists (from any message, ack, or the
//   conversation list's last_seq); a seq_no between the loaded ones and knownLast that is not
//   loaded is a gap, which the client backfills from history.

import { sameAttachments, type Ack, type Attachment, type Conversation, type ConversationUpdate, type Member, type Message, type Reaction, type Role } from './protocol';

export type PendingState = 'queued' | 'sending' | 'failed';

export interface PendingMessage {
  client_msg_id: string;
  convo_id: string;
  content: string;
  created_at: number;
  state: PendingState;
  attempts: number;
  error?: string;
  /** the seq_no it quotes: sent with every attempt, and kept by the message it becomes */
  reply_to?: number;
  /** the completed uploads it carries: their ids sent with every attempt, the files kept by
   * the message it becomes */
  attachments?: readonly Attachment[];
}

export interface ConvoLog {
  /** ascending seq_no, unique */
  readonly messages: readonly Message[];
  /** optimistic bubbles, in the order they were written */
  readonly pending: readonly PendingMessage[];
  /** highest seq_no known to exist */
  readonly knownLast: number;
  /** true when seq_no 1 is loaded or history said there is nothing older */
  readonly reachedStart: boolean;
}

export const emptyLog: ConvoLog = { messages: [], pending: [], knownLast: 0, reachedStart: false };

function indexOfSeq(messages: readonly Message[], seq: number): number {
  // binary search; returns the index of seq, or -(insertion point) - 1
  let lo = 0;
  let hi = messages.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const s = (messages[mid] as Message).seq_no;
    if (s === seq) return mid;
    if (s < seq) lo = mid + 1;
    else hi = mid - 1;
  }
  return -lo - 1;
}

export function hasSeq(log: ConvoLog, seq: number): boolean {
  return indexOfSeq(log.messages, seq) >= 0;
}

/** The loaded message at seq_no `seq`, if any. */
export function messageAt(log: ConvoLog, seq: number): Message | undefined {
  const i = indexOfSeq(log.messages, seq);
  return i >= 0 ? log.messages[i] : undefined;
}

/**
 * Merges messages from any source. A seq_no already present is kept as it is unless the
 * new copy differs (an edit), in which case the new copy replaces it. What a message quotes
 * (reply_to) never changes, so a copy that does not say (a source that does not carry it)
 * keeps the one known. A message that `me` sent removes the optimistic bubble with its
 * client_msg_id.
 */
export function mergeMessages(log: ConvoLog, incoming: readonly Message[], me: string): ConvoLog {
  if (incoming.length === 0) return log;
  let messages = log.messages.slice();
  let changed = false;
  let knownLast = log.knownLast;
  let reachedStart = log.reachedStart;
  const settled = new Set<string>();
  for (const m of incoming) {
    if (m.sender_id === me && m.client_msg_id !== '') settled.add(m.client_msg_id);
    if (m.seq_no > knownLast) knownLast = m.seq_no;
    if (m.seq_no === 1) reachedStart = true;
    const i = indexOfSeq(messages, m.seq_no);
    if (i >= 0) {
      const old = messages[i] as Message;
      const reply_to = m.reply_to ?? old.reply_to;
      // a copy that does not carry reactions (a live message, a sync) keeps the ones known;
      // a tombstone has none
      let reactions = m.reactions ?? old.reactions;
      let my_reaction = m.my_reaction !== undefined ? m.my_reaction : old.my_reaction;
      // the files a message carries never change; a copy that does not say keeps them
      let attachments = m.attachments ?? old.attachments;
      if (m.deleted) {
        reactions = reactions === undefined ? undefined : [];
        my_reaction = my_reaction === undefined ? undefined : null;
        attachments = attachments === undefined ? undefined : [];
      }
      if (
        old.content !== m.content ||
        old.server_msg_id !== m.server_msg_id ||
        Boolean(old.deleted) !== Boolean(m.deleted) ||
        old.reply_to !== reply_to ||
        !sameReactions(old.reactions, reactions) ||
        old.my_reaction !== my_reaction ||
        !sameAttachments(old.attachments, attachments)
      ) {
        const next: Message = { ...m, created_at: m.created_at || old.created_at };
        if (reply_to !== undefined) next.reply_to = reply_to;
        if (reactions !== undefined) next.reactions = reactions;
        if (my_reaction !== undefined) next.my_reaction = my_reaction;
        if (attachments !== undefined) next.attachments = attachments;
        messages[i] = next;
        changed = true;
      }
    } else {
      messages.splice(-i - 1, 0, m);
      changed = true;
    }
  }
  const pending = settled.size
    ? log.pending.filter((p) => !settled.has(p.client_msg_id))
    : log.pending;
  if (!changed) messages = log.messages as Message[];
  if (
    !changed &&
    pending.length === log.pending.length &&
    knownLast === log.knownLast &&
    reachedStart === log.reachedStart
  ) {
    return log;
  }
  return { messages, pending, knownLast, reachedStart };
}

/** An edit (content) or a deletion of a loaded message; other seq_nos are left alone. */
export function patchMessage(log: ConvoLog, seq: number, change: { content?: string; deleted?: boolean }): ConvoLog {
  const i = indexOfSeq(log.messages, seq);
  if (i < 0) return log;
  const old = log.messages[i] as Message;
  const next: Message = { ...old };
  if (change.content !== undefined) {
    next.content = change.content;
    next.edited = true;
  }
  if (change.deleted) {
    next.deleted = true;
    next.content = '';
    // a deleted message loses its reactions and its files
    if (next.reactions !== undefined) next.reactions = [];
    if (next.my_reaction !== undefined) next.my_reaction = null;
    if (next.attachments !== undefined) next.attachments = [];
  }
  const messages = log.messages.slice();
  messages[i] = next;
  return { ...log, messages };
}

/** Whether two lists of reactions say the same, in the same order. */
export function sameReactions(a: readonly Reaction[] | undefined, b: readonly Reaction[] | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined || a.length !== b.length) return false;
  return a.every((r, i) => r.emoji === b[i]?.emoji && r.count === b[i]?.count);
}

/**
 * A message.reaction frame: the message's reactions become the frame's (the server counts;
 * the client never does), and, when `mine` is given (the frame is about my own reaction), my
 * reaction becomes it. A message not loaded, or deleted, is left alone. Returns the same log
 * when nothing changes.
 */
export function applyReaction(log: ConvoLog, seq: number, reactions: readonly Reaction[], mine?: string | null): ConvoLog {
  const i = indexOfSeq(log.messages, seq);
  if (i < 0) return log;
  const old = log.messages[i] as Message;
  if (old.deleted) return log;
  const my_reaction = mine !== undefined ? mine : old.my_reaction;
  if (sameReactions(old.reactions, reactions) && old.my_reaction === my_reaction) return log;
  const next: Message = { ...old, reactions: reactions.slice() };
  if (my_reaction !== undefined) next.my_reaction = my_reaction;
  const messages = log.messages.slice();
  messages[i] = next;
  return { ...log, messages };
}

/** The server says seq_no `seq` exists (conversation list, delivery, read marker). */
export function noteKnownLast(log: ConvoLog, seq: number): ConvoLog {
  return seq > log.knownLast ? { ...log, knownLast: seq } : log;
}

/** History said there is nothing before the oldest loaded message. */
export function markReachedStart(log: ConvoLog): ConvoLog {
  return log.reachedStart ? log : { ...log, reachedStart: true };
}

/** The lowest loaded seq_no (the cursor for the page before it), or null. */
export function oldestSeq(log: ConvoLog): number | null {
  return log.messages[0]?.seq_no ?? null;
}

/**
 * The highest seq_no s such that every seq_no from the oldest loaded one up to s is loaded:
 * what the client has without a hole, and so the `since_seq` of a sync. 0 when nothing is
 * loaded.
 */
export function contiguousTop(log: ConvoLog): number {
  const ms = log.messages;
  if (ms.length === 0) return 0;
  const first = (ms[0] as Message).seq_no;
  // messages are unique and sorted, so ms[i].seq_no === first + i up to the first hole
  const last = (ms[ms.length - 1] as Message).seq_no;
  if (last - first === ms.length - 1) return last;
  let lo = 0;
  let hi = ms.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((ms[mid] as Message).seq_no === first + mid) lo = mid;
    else hi = mid - 1;
  }
  return (ms[lo] as Message).seq_no;
}

/** The seq_nos missing after the contiguous part, as a range to backfill, or null. */
export function findGap(log: ConvoLog): { sinceSeq: number; upTo: number } | null {
  if (log.messages.length === 0) return null; // nothing loaded: the client loads a page instead
  const top = contiguousTop(log);
  return log.knownLast > top ? { sinceSeq: top, upTo: log.knownLast } : null;
}

/** Every missing seq_no between the oldest loaded and knownLast (for display and tests). */
export function missingSeqs(log: ConvoLog): number[] {
  const first = oldestSeq(log);
  if (first === null) return [];
  const out: number[] = [];
  let i = 0;
  for (let s = first; s <= log.knownLast; s++) {
    const m = log.messages[i];
    if (m !== undefined && m.seq_no === s) i++;
    else out.push(s);
  }
  return out;
}

export function addPending(log: ConvoLog, p: PendingMessage): ConvoLog {
  if (log.pending.some((q) => q.client_msg_id === p.client_msg_id)) return log;
  return { ...log, pending: [...log.pending, p] };
}

export function updatePending(
  log: ConvoLog,
  client_msg_id: string,
  change: Partial<Pick<PendingMessage, 'state' | 'attempts' | 'error'>>,
): ConvoLog {
  let hit = false;
  const pending = log.pending.map((p) => {
    if (p.client_msg_id !== client_msg_id) return p;
    hit = true;
    const next: PendingMessage = { ...p, ...change };
    if (change.state !== undefined && change.state !== 'failed') delete next.error;
    return next;
  });
  return hit ? { ...log, pending } : log;
}

export function removePending(log: ConvoLog, client_msg_id: string): ConvoLog {
  const pending = log.pending.filter((p) => p.client_msg_id !== client_msg_id);
  return pending.length === log.pending.length ? log : { ...log, pending };
}

export function findPending(log: ConvoLog, client_msg_id: string): PendingMessage | undefined {
  return log.pending.find((p) => p.client_msg_id === client_msg_id);
}

/**
 * Applies an ack to the bubble it answers. `ok` and `duplicate` (a retry the server had
 * already accepted: same seq_no, same server_msg_id) turn the bubble into the message at its
 * seq_no; if that seq_no is already loaded (the message.create came first), the bubble just
 * goes. `error` marks the bubble failed with the server's reason. An ack for no bubble here
 * (another tab of the same user) changes nothing but knownLast.
 */
export function applyAck(log: ConvoLog, ack: Ack, me: string): ConvoLog {
  const p = findPending(log, ack.client_msg_id);
  if (ack.status === 'error') {
    if (!p) return log;
    return updatePending(log, ack.client_msg_id, {
      state: 'failed',
      error: ack.error?.message || ack.error?.code || 'refused',
    });
  }
  if (ack.seq_no === undefined) {
    // An ok without a seq_no cannot be placed; the message.create or a sync will place it.
    return log;
  }
  if (!p) return noteKnownLast(log, ack.seq_no);
  const message: Message = {
    convo_id: p.convo_id,
    seq_no: ack.seq_no,
    server_msg_id: ack.server_msg_id ?? `${p.convo_id}:${ack.seq_no}`,
    sender_id: me,
    client_msg_id: p.client_msg_id,
    content: p.content,
    created_at: p.created_at,
  };
  if (p.reply_to !== undefined) message.reply_to = p.reply_to;
  if (p.attachments !== undefined && p.attachments.length > 0) message.attachments = p.attachments;
  if (hasSeq(log, ack.seq_no)) return removePending(noteKnownLast(log, ack.seq_no), p.client_msg_id);
  return mergeMessages(log, [message], me);
}

export type Tick = 'sending' | 'failed' | 'sent' | 'delivered' | 'read';

export interface Receipts {
  /** user id -> highest seq_no that user has read */
  readonly readBy: Readonly<Record<string, number>>;
  /** highest seq_no delivered to at least one other member */
  readonly delivered: number;
}

export const emptyReceipts: Receipts = { readBy: {}, delivered: 0 };

export function applyRead(r: Receipts, user_id: string, seq: number): Receipts {
  const old = r.readBy[user_id] ?? 0;
  if (seq <= old) return r;
  return { ...r, readBy: { ...r.readBy, [user_id]: seq } };
}

export function applyDelivered(r: Receipts, seq: number): Receipts {
  return seq > r.delivered ? { ...r, delivered: seq } : r;
}

/** The tick of one of my messages: read by another member, delivered, or only stored. */
export function tickFor(seq: number, receipts: Receipts, me: string): Tick {
  for (const [user, read] of Object.entries(receipts.readBy)) {
    if (user !== me && read >= seq) return 'read';
  }
  return receipts.delivered >= seq ? 'delivered' : 'sent';
}

/** "Seen by …" under my latest message in a group: the names the receipts give (at most 50),
 * and `counted`, how many others the server counted (0 when it did not count this message);
 * the larger says how many. "" when nobody has seen it. */
export function seenByText(names: string[], counted: number): string {
  const n = Math.max(names.length, counted);
  if (n === 0) return '';
  if (names.length === 0) return `Seen by ${n}`;
  if (n <= 3 && names.length === n) return `Seen by ${names.join(', ')}`;
  const shown = names.slice(0, 3);
  return `Seen by ${shown.join(', ')} and ${n - shown.length} more`;
}

// ---- the conversation list: conversation.update frames --------------------------------

/** A member's role; a member the server gave no role is a plain member. */
export function roleOf(c: Conversation, user_id: string): Role | null {
  const m = c.members.find((x) => x.user_id === user_id);
  return m ? (m.role ?? 'member') : null;
}

export interface ConvoUpdateResult {
  readonly conversations: readonly Conversation[];
  /** I am not a member any more (removed, or I left): the conversation left the list */
  readonly left: boolean;
  /** the conversation is one the list does not hold yet (I was added), or the change is one
   * the frame cannot say in full: the list should be asked again */
  readonly reload: boolean;
}

function withMembers(c: Conversation, members: Member[]): Conversation {
  return { ...c, members };
}

/**
 * Applies a conversation.update frame to the conversation list: a rename or a new topic, a
 * role, members added or removed (the one promoted to owner when the last owner left). When
 * `me` is among those removed, the conversation goes from the list. Returns the same list
 * when nothing changes.
 */
export function applyConversationUpdate(list: readonly Conversation[], u: ConversationUpdate, me: string): ConvoUpdateResult {
  const i = list.findIndex((c) => c.id === u.convo_id);
  const c = i >= 0 ? (list[i] as Conversation) : null;
  const same = (reload: boolean): ConvoUpdateResult => ({ conversations: list, left: false, reload });
  const replace = (next: Conversation): ConvoUpdateResult => {
    const out = list.slice();
    out[i] = next;
    return { conversations: out, left: false, reload: false };
  };
  switch (u.change) {
    case 'created':
      return same(c === null);
    case 'members_added': {
      if (c === null) return same(true);
      const fresh = u.members.filter((id) => !c.members.some((m) => m.user_id === id));
      if (fresh.length === 0) return same(false);
      return replace(withMembers(c, [...c.members, ...fresh.map((user_id): Member => ({ user_id, role: 'member' }))]));
    }
    case 'members_removed': {
      if (u.members.includes(me)) {
        return c === null ? same(false) : { conversations: list.filter((x) => x.id !== u.convo_id), left: true, reload: false };
      }
      if (c === null) return same(true); // a conversation of mine the list does not hold yet
      const gone = new Set(u.members);
      const members = c.members
        .filter((m) => !gone.has(m.user_id))
        .map((m): Member => (m.user_id === u.promoted ? { ...m, role: 'owner' } : m));
      const promotedKnown = u.promoted === undefined || members.some((m) => m.user_id === u.promoted);
      if (members.length === c.members.length && u.promoted === undefined) return same(false);
      return { ...replace(withMembers(c, members)), reload: !promotedKnown };
    }
    case 'updated': {
      if (c === null) return same(true);
      const title = u.title ?? c.title;
      const topic = u.topic ?? c.topic;
      return title === c.title && topic === c.topic ? same(false) : replace({ ...c, title, topic });
    }
    case 'role': {
      if (c === null) return same(true);
      const j = c.members.findIndex((m) => m.user_id === u.user_id);
      if (j < 0) return same(true); // a member this list does not hold yet
      const old = c.members[j] as Member;
      if ((old.role ?? 'member') === u.role) return same(false);
      const members = c.members.slice();
      members[j] = { ...old, role: u.role };
      return replace(withMembers(c, members));
    }
    case 'other':
      return same(true);
  }
}

/** What `me` may do in a conversation, from its kind and my role (the processor decides; the
 * client only hides what would be refused). */
export interface Abilities {
  /** rename, set or clear the topic */
  edit: boolean;
  add: boolean;
  leave: boolean;
  /** remove this member (not me: leaving is `leave`) */
  remove(user_id: string): boolean;
  /** the roles this member may be given by me (their current one excluded) */
  rolesFor(user_id: string): Role[];
}

export function abilitiesOf(c: Conversation, me: string): Abilities {
  const mine = c.kind === 'direct' ? null : roleOf(c, me);
  const manager = mine === 'owner' || mine === 'admin';
  return {
    edit: manager,
    add: manager,
    leave: mine !== null,
    remove(user_id) {
      if (!manager || user_id === me) return false;
      const theirs = roleOf(c, user_id);
      return theirs !== null && (mine === 'owner' || theirs !== 'owner');
    },
    rolesFor(user_id) {
      if (!manager || user_id === me) return [];
      const theirs = roleOf(c, user_id);
      if (theirs === null) return [];
      // only owners make or unmake owners
      const can: Role[] = mine === 'owner' ? ['owner', 'admin', 'member'] : theirs === 'owner' ? [] : ['admin', 'member'];
      return can.filter((r) => r !== theirs);
    },
  };
}
