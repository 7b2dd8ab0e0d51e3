// The shapes of kchat's REST bodies and WebSocket frames, and the checks that turn the
// unknown JSON a server sends into them. Every value from the network goes through one of
// the parse* functions: a field of the wrong type makes the whole value null, never a
// half-typed object.

export const MAX_CONTENT_BYTES = 16384; // the processor's default --max-content-bytes
export const MAX_ID_BYTES = 128; // the processor's default --max-id-bytes
export const MAX_FRAME_BYTES = 256 * 1024; // larger incoming frames are dropped unread
export const MAX_USERNAME = 64;
export const MAX_PASSWORD = 1024;
/** at most this many files in one message (message.send's `attachments`) */
export const MAX_ATTACHMENTS = 10;

/** A file a message carries, as the API found it in the object store (POST
 * /attachments/{id}/complete, and every message that carries it). */
export interface Attachment {
  id: string;
  key: string;
  /** the file name the sender gave */
  name: string;
  /** bytes */
  size: number;
  content_type: string;
  /** an image's size in pixels, else null */
  width: number | null;
  height: number | null;
  /** an image's thumbnail (WebP, at most 320 by 320), else null */
  thumb_key: string | null;
}

export interface Message {
  convo_id: string;
  seq_no: number;
  server_msg_id: string;
  sender_id: string;
  client_msg_id: string;
  content: string;
  /** milliseconds since the epoch */
  created_at: number;
  deleted?: boolean;
  edited?: boolean;
  /** the seq_no of the earlier message of the same conversation this one quotes */
  reply_to?: number;
  /** its reactions in the server's order (most first); absent when the source does not say
   * (a live message.create, a sync), [] when there are none */
  reactions?: readonly Reaction[];
  /** my own reaction (null: none); absent when the source does not say */
  my_reaction?: string | null;
  /** the files it carries ([] when none, and once deleted); absent when the source does not
   * say */
  attachments?: readonly Attachment[];
}

/** One emoji on a message and how many members chose it. */
export interface Reaction {
  emoji: string;
  count: number;
}

/** The reactions the client offers (the server takes any short emoji). */
export const REACTIONS: readonly { emoji: string; name: string }[] = [
  { emoji: '👍', name: 'Thumbs up' },
  { emoji: '❤️', name: 'Heart' },
  { emoji: '😂', name: 'Laughing' },
  { emoji: '😮', name: 'Surprised' },
  { emoji: '😢', name: 'Sad' },
  { emoji: '🎉', name: 'Celebrate' },
];
export const MAX_REACTION_BYTES = 64; // kc_chat_reaction_valid
export const MAX_REACTION_KINDS = 20; // KC_CHAT_MAX_REACTION_KINDS

export const MAX_TITLE_BYTES = 256; // a conversation's title (the processor's limit)
export const MAX_TOPIC_BYTES = 1024; // a conversation's topic

/** A member's role in a group: the creator is its owner; owners and admins manage it. */
export type Role = 'owner' | 'admin' | 'member';

export function isRole(v: unknown): v is Role {
  return v === 'owner' || v === 'admin' || v === 'member';
}

export interface Member {
  user_id: string;
  username?: string;
  read_seq?: number;
  /** the highest seq_no that reached a socket of this member (from the receipts) */
  delivered_seq?: number;
  /** from the body's `roles`; absent when the server says nothing (a plain member) */
  role?: Role;
}

export interface Conversation {
  id: string;
  /** `direct`: the one conversation of two people (its members never change) */
  kind: 'group' | 'direct';
  title: string;
  /** '' when none */
  topic: string;
  members: Member[];
  last_seq: number;
  unread: number;
  last_message: Message | null;
  /** ms of the last activity, for ordering; from last_message when the server gives none */
  last_activity: number;
  /** how many members have read, and got, message `seq` (the last when the server counted;
   * its sender included): beside the at most 50 names of the receipts */
  receipt_counts?: { seq: number; read: number; delivered: number };
  /** I muted it (no desktop notification, not counted in the tab's title): absent or false
   * when not */
  muted?: boolean;
  /** ms when my mute runs out; null: until I unmute it */
  muted_until?: number | null;
}

/** Whether a conversation is muted for me at `now` (a mute whose time has run out is not). */
export function isMuted(c: Pick<Conversation, 'muted' | 'muted_until'>, now = Date.now()): boolean {
  if (!c.muted) return false;
  return c.muted_until === undefined || c.muted_until === null || c.muted_until > now;
}

/** The body of `PUT` and `DELETE /conversations/{id}/mute`: `{muted, muted_until}`, or null. */
export function parseMute(v: unknown): { muted: boolean; muted_until: number | null } | null {
  if (!isObj(v) || typeof v['muted'] !== 'boolean') return null;
  const until = v['muted_until'] === undefined || v['muted_until'] === null ? null : toMillis(v['muted_until']);
  if (until === null && v['muted_until'] !== undefined && v['muted_until'] !== null) return null;
  return { muted: v['muted'], muted_until: v['muted'] ? until : null };
}

export interface Ack {
  client_msg_id: string;
  status: 'ok' | 'duplicate' | 'error';
  server_msg_id?: string;
  seq_no?: number;
  error?: { code: string; message: string };
}

/** What a `conversation.update` frame says changed (`other`: a change this client cannot
 * read, which it answers by reloading the list). */
export type ConversationChange =
  | { change: 'created'; title?: string; members: string[] }
  | { change: 'members_added'; members: string[] }
  | { change: 'members_removed'; members: string[]; left_seq: number | null; promoted?: string }
  | { change: 'updated'; title?: string; topic?: string }
  | { change: 'role'; user_id: string; role: Role }
  | { change: 'other' };

export type ConversationUpdate = ConversationChange & { convo_id: string; actor_id?: string };

export type ServerFrame =
  | { type: 'ack'; ack: Ack }
  | { type: 'message.create'; message: Message }
  | { type: 'message.delivery'; convo_id: string; seq_no: number; user_id?: string }
  | { type: 'message.read'; convo_id: string; user_id: string; seq_no: number }
  | { type: 'message.update'; convo_id: string; seq_no: number; content: string }
  | { type: 'message.delete'; convo_id: string; seq_no: number }
  | {
      type: 'message.reaction';
      convo_id: string;
      seq_no: number;
      /** who reacted */
      user_id: string;
      /** their reaction now (null: removed) */
      emoji: string | null;
      /** the message's reactions after the change: authoritative */
      reactions: Reaction[];
    }
  | { type: 'typing'; convo_id: string; user_id: string; typing: boolean; expires_in_ms: number | null }
  | { type: 'sync.complete'; convo_id: string; up_to_seq: number; more: boolean }
  | { type: 'conversation.update'; update: ConversationUpdate }
  | { type: 'presence.update'; user_id: string; online: boolean; last_seen: number | null }
  | { type: 'system.notice'; code: string; message: string }
  | {
      type: 'error';
      code: string;
      message: string;
      in_reply_to: string | null;
      convo_id: string | null;
      /** presence.subscribe's refused ids (not_visible) */
      user_ids?: string[];
    };

export type ClientFrame =
  | { type: 'message.send'; convo_id: string; client_msg_id: string; content: string; reply_to?: number; attachments?: string[] }
  | { type: 'message.read'; convo_id: string; seq_no: number }
  | { type: 'message.edit'; convo_id: string; seq_no: number; content: string }
  | { type: 'message.delete'; convo_id: string; seq_no: number }
  | { type: 'message.react'; convo_id: string; seq_no: number; emoji: string | null }
  | { type: 'typing.start'; convo_id: string }
  | { type: 'typing.stop'; convo_id: string }
  | { type: 'presence.subscribe'; user_ids: string[] }
  | { type: 'sync'; convo_id: string; since_seq: number };

type Obj = Record<string, unknown>;

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(o: Obj, k: string): string | null {
  const v = o[k];
  return typeof v === 'string' ? v : null;
}

function seq(o: Obj, k: string): number | null {
  const v = o[k];
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : null;
}

export function utf8Bytes(s: string): number {
  return new TextEncoder().encode(s).length;
}

/** An id as the server makes them: 1..MAX_ID_BYTES printable ASCII, no spaces. */
export function validId(s: unknown): s is string {
  return typeof s === 'string' && s.length >= 1 && s.length <= MAX_ID_BYTES && /^[\x21-\x7e]+$/.test(s);
}

/** A user id as kchat-api makes them: `u_` and 26 characters of lowercase base32. */
export function looksLikeUserId(s: string): boolean {
  return /^u_[a-z2-7]{26}$/.test(s);
}

/** Milliseconds since the epoch from an ISO string, or from seconds or milliseconds. */
export function toMillis(v: unknown): number | null {
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return v < 1e11 ? v * 1000 : v;
  if (typeof v === 'string') {
    const t = Date.parse(v);
    if (!Number.isNaN(t)) return t;
    if (/^\d+$/.test(v)) return toMillis(Number(v));
  }
  return null;
}

/** A reaction as the server checks them (kc_chat_reaction_valid): 1..64 bytes of UTF-8, at
 * most 16 code points, no ASCII spaces or controls, no C1 controls, no U+00A0, U+2028 or
 * U+2029. */
export function validReaction(s: unknown): s is string {
  if (typeof s !== 'string' || s.length === 0) return false;
  const n = utf8Bytes(s);
  if (n > MAX_REACTION_BYTES || [...s].length > 16) return false;
  return !/[\u0000-\u0020\u007f-\u00a0\u2028\u2029]/.test(s);
}

/** A message's reactions ([{emoji, count}], in the server's order), or null when the value
 * is not such a list. Each emoji once, counts of at least 1. */
export function parseReactions(v: unknown): Reaction[] | null {
  if (!Array.isArray(v) || v.length > MAX_REACTION_KINDS * 4) return null;
  const out: Reaction[] = [];
  const seen = new Set<string>();
  for (const r of v as unknown[]) {
    if (!isObj(r)) return null;
    const emoji = r['emoji'];
    const count = r['count'];
    if (!validReaction(emoji) || typeof count !== 'number' || !Number.isSafeInteger(count) || count < 1) return null;
    if (seen.has(emoji)) return null;
    seen.add(emoji);
    out.push({ emoji, count });
  }
  return out;
}

/** An optional reaction field: a reaction, null (none), or undefined when it is neither. */
function optReaction(v: unknown): string | null | undefined {
  if (v === null) return null;
  return validReaction(v) ? v : undefined;
}

function dimension(v: unknown): number | null | undefined {
  if (v === null || v === undefined) return null;
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 1 ? v : undefined;
}

/** One attachment as the server describes it, or null when a field is missing or of the
 * wrong type. */
export function parseAttachment(v: unknown): Attachment | null {
  if (!isObj(v)) return null;
  const id = str(v, 'id');
  const key = str(v, 'key');
  const name = str(v, 'name');
  const content_type = str(v, 'content_type');
  const size = v['size'];
  const width = dimension(v['width']);
  const height = dimension(v['height']);
  const thumb = v['thumb_key'];
  if (!validId(id) || key === null || name === null || content_type === null) return null;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 1) return null;
  if (width === undefined || height === undefined) return null;
  if (thumb !== null && thumb !== undefined && typeof thumb !== 'string') return null;
  return { id, key, name, size, content_type, width, height, thumb_key: typeof thumb === 'string' && thumb ? thumb : null };
}

/** A message's `attachments`: the list (malformed entries left out, at most MAX_ATTACHMENTS),
 * or null when the field is not a list. */
export function parseAttachments(v: unknown): Attachment[] | null {
  if (!Array.isArray(v)) return null;
  return (v as unknown[])
    .slice(0, MAX_ATTACHMENTS)
    .map(parseAttachment)
    .filter((a): a is Attachment => a !== null);
}

/** Whether two lists of attachments name the same files, in the same order. */
export function sameAttachments(a: readonly Attachment[] | undefined, b: readonly Attachment[] | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined || a.length !== b.length) return false;
  return a.every((x, i) => x.id === b[i]?.id);
}

export function parseMessage(v: unknown): Message | null {
  if (!isObj(v)) return null;
  const convo_id = str(v, 'convo_id');
  const seq_no = seq(v, 'seq_no');
  const sender_id = str(v, 'sender_id');
  const content = str(v, 'content');
  if (!validId(convo_id) || seq_no === null || seq_no < 1 || !validId(sender_id) || content === null) {
    return null;
  }
  // reply_to: a seq_no, or null/absent (0 taken as "not a reply" too); another type is refused
  const rawReply = v['reply_to'];
  const reply_to = rawReply === undefined || rawReply === null ? null : seq(v, 'reply_to');
  if (rawReply !== undefined && rawReply !== null && reply_to === null) return null;
  const m: Message = {
    convo_id,
    seq_no,
    server_msg_id: str(v, 'server_msg_id') ?? `${convo_id}:${seq_no}`,
    sender_id,
    client_msg_id: str(v, 'client_msg_id') ?? '',
    content,
    created_at: toMillis(v['created_at']) ?? 0,
  };
  // a tombstone: `deleted: true` on the socket, `deleted_at` set in history
  if (v['deleted'] === true || (v['deleted_at'] !== undefined && v['deleted_at'] !== null)) m.deleted = true;
  if (v['edited_at'] !== undefined && v['edited_at'] !== null) m.edited = true;
  const edits = seq(v, 'edit_count');
  if (edits !== null && edits > 0) m.edited = true;
  // only an earlier message can be quoted: anything else is ignored, not shown
  if (reply_to !== null && reply_to >= 1 && reply_to < seq_no) m.reply_to = reply_to;
  // history's reactions and the caller's own; a malformed field is as good as absent
  const reactions = parseReactions(v['reactions']);
  if (reactions !== null) m.reactions = m.deleted ? [] : reactions;
  const mine = optReaction(v['my_reaction']);
  if (mine !== undefined) m.my_reaction = m.deleted ? null : mine;
  // the files it carries: none once deleted
  const atts = parseAttachments(v['attachments']);
  if (atts !== null) m.attachments = m.deleted ? [] : atts;
  return m;
}

function parseMember(v: unknown): Member | null {
  if (validId(v)) return { user_id: v };
  if (!isObj(v)) return null;
  const user_id = str(v, 'user_id') ?? str(v, 'id');
  if (!validId(user_id)) return null;
  const m: Member = { user_id };
  const username = str(v, 'username');
  if (username !== null) m.username = username;
  const read = seq(v, 'read_seq');
  if (read !== null) m.read_seq = read;
  return m;
}

export function parseConversation(v: unknown): Conversation | null {
  if (!isObj(v)) return null;
  const id = str(v, 'id') ?? str(v, 'convo_id');
  if (!validId(id)) return null;
  const rawMembers = Array.isArray(v['members']) ? (v['members'] as unknown[]) : [];
  const members = rawMembers.map(parseMember).filter((m): m is Member => m !== null);
  // member_names: {user_id: username}, beside the members list of ids
  const names = isObj(v['member_names']) ? v['member_names'] : null;
  if (names) {
    for (const m of members) {
      const n = names[m.user_id];
      if (m.username === undefined && typeof n === 'string') m.username = n;
    }
  }
  // receipts: {user_id: {read_seq, delivered_seq}}, the members' read and delivery marks
  // (they restore the ticks)
  const receipts = isObj(v['receipts']) ? v['receipts'] : null;
  if (receipts) {
    for (const m of members) {
      const r = receipts[m.user_id];
      const read = isObj(r) ? seq(r, 'read_seq') : null;
      if (read !== null && (m.read_seq === undefined || read > m.read_seq)) m.read_seq = read;
      const delivered = isObj(r) ? seq(r, 'delivered_seq') : null;
      if (delivered !== null) m.delivered_seq = delivered;
    }
  }
  // roles: {user_id: "owner"|"admin"|"member"}, every member
  const roles = isObj(v['roles']) ? v['roles'] : null;
  if (roles) {
    for (const m of members) {
      const r = roles[m.user_id];
      if (isRole(r)) m.role = r;
    }
  }
  const last_message = parseMessage(v['last_message']);
  const last_seq = Math.max(seq(v, 'last_seq') ?? 0, last_message?.seq_no ?? 0);
  const rc = isObj(v['receipt_counts']) ? v['receipt_counts'] : null;
  const read = rc ? seq(rc, 'read') : null;
  const delivered = rc ? seq(rc, 'delivered') : null;
  const activity =
    toMillis(v['last_activity']) ?? last_message?.created_at ?? toMillis(v['created_at']) ?? 0;
  return {
    id,
    kind: str(v, 'kind') === 'direct' ? 'direct' : 'group',
    title: str(v, 'title') ?? '',
    topic: str(v, 'topic') ?? '',
    members,
    last_seq,
    unread: seq(v, 'unread') ?? 0,
    last_message,
    last_activity: activity,
    ...(read !== null && delivered !== null ? { receipt_counts: { seq: last_seq, read, delivered } } : {}),
    ...(v['muted'] === true ? { muted: true, muted_until: toMillis(v['muted_until']) } : {}),
  };
}

export function parseAck(v: Obj): Ack | null {
  const client_msg_id = str(v, 'client_msg_id');
  const status = str(v, 'status');
  if (!validId(client_msg_id)) return null;
  if (status !== 'ok' && status !== 'duplicate' && status !== 'error') return null;
  const ack: Ack = { client_msg_id, status };
  const sid = str(v, 'server_msg_id');
  if (sid !== null) ack.server_msg_id = sid;
  const s = seq(v, 'seq_no');
  if (s !== null && s >= 1) ack.seq_no = s;
  const e = parseError(v);
  if (e !== null) ack.error = e;
  return ack;
}

/** `{error: {code, message}}`, the error shape of both REST and the socket. */
export function parseError(v: unknown): { code: string; message: string } | null {
  if (!isObj(v) || !isObj(v['error'])) return null;
  const e = v['error'];
  return { code: str(e, 'code') ?? 'error', message: str(e, 'message') ?? 'unknown error' };
}

/** A typing frame's `state`: the gateway may say start/stop, typing/idle or true/false. */
function typingState(v: unknown): boolean | null {
  if (typeof v === 'boolean') return v;
  if (typeof v !== 'string') return null;
  if (['start', 'started', 'typing', 'active', 'on'].includes(v)) return true;
  if (['stop', 'stopped', 'idle', 'paused', 'inactive', 'off'].includes(v)) return false;
  return null;
}

/** The ids of a frame's `members`, or null when it is not a list of ids. */
function idList(v: unknown): string[] | null {
  if (!Array.isArray(v)) return null;
  return v.every(validId) ? (v as string[]) : null;
}

/** The change a conversation.update frame describes; `other` when it is not one this client
 * knows or a field of it has the wrong shape (the frame still says the conversation changed). */
function parseChange(v: Obj): ConversationChange {
  const other: ConversationChange = { change: 'other' };
  switch (v['change']) {
    case 'created':
    case 'members_added': {
      const members = idList(v['members'] ?? []);
      if (!members) return other;
      if (v['change'] === 'members_added') return { change: 'members_added', members };
      const title = str(v, 'title');
      return title !== null ? { change: 'created', title, members } : { change: 'created', members };
    }
    case 'members_removed': {
      const members = idList(v['members']);
      const promoted = v['promoted'];
      if (!members || (promoted !== undefined && promoted !== null && !validId(promoted))) return other;
      const c: ConversationChange = { change: 'members_removed', members, left_seq: seq(v, 'left_seq') };
      if (validId(promoted)) c.promoted = promoted;
      return c;
    }
    case 'updated': {
      const title = v['title'];
      const topic = v['topic'];
      if ((title !== undefined && title !== null && typeof title !== 'string') || (topic !== undefined && topic !== null && typeof topic !== 'string')) {
        return other;
      }
      const c: ConversationChange = { change: 'updated' };
      if (typeof title === 'string') c.title = title;
      if (typeof topic === 'string') c.topic = topic;
      return c;
    }
    case 'role': {
      const user_id = str(v, 'user_id');
      const role = v['role'];
      return validId(user_id) && isRole(role) ? { change: 'role', user_id, role } : other;
    }
    default:
      return other;
  }
}

/** One text frame from the gateway; null for a frame this client does not understand. */
export function parseServerFrame(text: string): ServerFrame | null {
  if (text.length > MAX_FRAME_BYTES) return null;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObj(v)) return null;
  switch (v['type']) {
    case 'ack': {
      const ack = parseAck(v);
      return ack ? { type: 'ack', ack } : null;
    }
    case 'message.create': {
      const message = parseMessage(isObj(v['message']) ? v['message'] : v);
      return message ? { type: 'message.create', message } : null;
    }
    case 'message.delivery': {
      const convo_id = str(v, 'convo_id');
      const s = seq(v, 'seq_no');
      if (!validId(convo_id) || s === null) return null;
      const user_id = str(v, 'user_id');
      return user_id !== null
        ? { type: 'message.delivery', convo_id, seq_no: s, user_id }
        : { type: 'message.delivery', convo_id, seq_no: s };
    }
    case 'message.read': {
      const convo_id = str(v, 'convo_id');
      const user_id = str(v, 'user_id');
      const s = seq(v, 'seq_no');
      if (!validId(convo_id) || !validId(user_id) || s === null) return null;
      return { type: 'message.read', convo_id, user_id, seq_no: s };
    }
    case 'message.update': {
      const convo_id = str(v, 'convo_id');
      const s = seq(v, 'seq_no');
      const content = str(v, 'content');
      if (!validId(convo_id) || s === null || s < 1 || content === null) return null;
      return { type: 'message.update', convo_id, seq_no: s, content };
    }
    case 'message.delete': {
      const convo_id = str(v, 'convo_id');
      const s = seq(v, 'seq_no');
      if (!validId(convo_id) || s === null || s < 1) return null;
      return { type: 'message.delete', convo_id, seq_no: s };
    }
    case 'message.reaction': {
      const convo_id = str(v, 'convo_id');
      const s = seq(v, 'seq_no');
      const user_id = str(v, 'user_id');
      const emoji = optReaction(v['emoji'] ?? null);
      const reactions = parseReactions(v['reactions']);
      if (!validId(convo_id) || s === null || s < 1 || !validId(user_id) || emoji === undefined || reactions === null) return null;
      return { type: 'message.reaction', convo_id, seq_no: s, user_id, emoji, reactions };
    }
    case 'typing': {
      const convo_id = str(v, 'convo_id');
      const user_id = str(v, 'user_id');
      const typing = typingState(v['state'] ?? v['typing']);
      if (!validId(convo_id) || !validId(user_id) || typing === null) return null;
      const ttl = seq(v, 'expires_in_ms');
      return { type: 'typing', convo_id, user_id, typing, expires_in_ms: ttl !== null && ttl > 0 ? Math.min(ttl, 60000) : null };
    }
    case 'sync.complete': {
      const convo_id = str(v, 'convo_id');
      const up = seq(v, 'up_to_seq');
      if (!validId(convo_id) || up === null) return null;
      return { type: 'sync.complete', convo_id, up_to_seq: up, more: v['more'] === true };
    }
    case 'conversation.update': {
      const convo_id = str(v, 'convo_id');
      if (!validId(convo_id)) return null;
      const update: ConversationUpdate = { convo_id, ...parseChange(v) };
      const actor = str(v, 'actor_id');
      if (validId(actor)) update.actor_id = actor;
      return { type: 'conversation.update', update };
    }
    case 'presence.update': {
      const user_id = str(v, 'user_id');
      const status = str(v, 'status');
      if (!validId(user_id) || (status !== 'online' && status !== 'offline')) return null;
      return {
        type: 'presence.update',
        user_id,
        online: status === 'online',
        last_seen: toMillis(v['last_seen']),
      };
    }
    case 'system.notice':
      return {
        type: 'system.notice',
        code: str(v, 'code') ?? 'notice',
        message: str(v, 'message') ?? '',
      };
    case 'error': {
      const e = parseError(v) ?? { code: str(v, 'code') ?? 'error', message: str(v, 'message') ?? '' };
      const ids = v['user_ids'];
      const frame: Extract<ServerFrame, { type: 'error' }> = {
        type: 'error',
        ...e,
        in_reply_to: str(v, 'in_reply_to'),
        convo_id: str(v, 'convo_id'),
      };
      if (Array.isArray(ids)) frame.user_ids = ids.filter((x): x is string => typeof x === 'string');
      return frame;
    }
    default:
      return null;
  }
}
