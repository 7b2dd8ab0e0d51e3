// The chat client: the socket, the REST calls and the message store put together. It holds
// one immutable ChatState, replaced on every change, which React reads with
// useSyncExternalStore.
//
// Delivery rules:
// - A message is an optimistic bubble until its ack; it is kept in localStorage (the
//   outbox) until then, and sent again with the same client_msg_id on every reconnect and
//   after ACK_TIMEOUT_MS without an ack, so a dropped socket or a reload never loses it and
//   the server's dedupe never makes it twice.
// - On every (re)connect the client sends `sync {convo_id, since_seq}` for each conversation
//   it has loaded, since_seq being the top of what it holds without a hole, and reloads the
//   conversation list, whose last_seq shows what it missed.
// - Whenever the store shows a gap (a live message past a hole, a last_seq past what is
//   loaded), the client backfills it from history after a short grace period (a sync may
//   be filling it already), retrying while the read model catches up.

import { Api, ApiError, type Person, type SearchPage, type Session } from './api';
import {
  MAX_ATTACHMENTS,
  MAX_CONTENT_BYTES,
  looksLikeUserId,
  parseAttachments,
  type Attachment,
  utf8Bytes,
  type Ack,
  type ClientFrame,
  type Conversation,
  type ConversationUpdate,
  type Message,
  type Reaction,
  type Role,
  type ServerFrame,
  validReaction,
} from './protocol';
import { LinkCache } from './attachments';
import { ChatSocket, type SocketState } from './socket';
import { uploadFile, type UploadEvents, type UploadHandle } from './upload';
import { titleOf } from './ui/format';
import {
  addPending,
  applyAck,
  applyConversationUpdate,
  applyDelivered,
  applyReaction,
  applyRead,
  contiguousTop,
  emptyLog,
  emptyReceipts,
  findGap,
  hasSeq,
  markReachedStart,
  mergeMessages,
  messageAt,
  noteKnownLast,
  oldestSeq,
  patchMessage,
  removePending,
  updatePending,
  type ConvoLog,
  type PendingMessage,
  type Receipts,
} from './store';

export const PAGE_SIZE = 50;
const BACKFILL_PAGE = 200;
const ACK_TIMEOUT_MS = 15000;
/** ack error codes that say "try again" (the outcome is unknown or the server was busy) */
const RETRIABLE_ACK = new Set(['timeout', 'unavailable', 'rate_limited', 'too_many_in_flight', 'internal', 'busy', 'stopping']);
const RETRY_AFTER_MS = 2000;
const TYPING_SEND_EVERY_MS = 3000;
const TYPING_IDLE_MS = 4000;
const TYPING_SHOWN_MS = 6000;
const GAP_GRACE_MS = 400;
const MAX_OUTBOX = 500;
const MAX_NOTICES = 5;
/** a conversation I left stays out of the list this long, whatever a lagging list says */
const DEPARTED_MS = 30000;
/** what a conversation.update frame changed wins over a list this long (the read model the
 * list comes from may not have the change yet) */
const FRAME_FRESH_MS = 5000;
const LIST_RETRIES = 4;
/** at most this many pages of BACKFILL_PAGE are loaded to reach a quoted message */
const JUMP_PAGES = 10;
/** what a message.reaction frame said wins over a history page this long (the read model
 * the page comes from may not have the change yet) */
const REACTION_FRESH_MS = 10000;

/** What the last message.reaction frames said of one message, and when. */
interface ReactionNote {
  at: number;
  reactions: Reaction[];
  /** my reaction, when a frame of mine said it */
  mine?: string | null;
}

export interface Presence {
  online: boolean;
  last_seen: number | null;
}

export interface ConvoView {
  loadingLatest: boolean;
  loadingOlder: boolean;
  /** newer messages of a detached view are being loaded */
  loadingNewer?: boolean;
  /** the loaded messages were opened at a message (a search result, a message link) and do
   * not reach the newest ones yet: newer pages are loaded as the reader scrolls down, and
   * live messages wait in history until then */
  detached?: boolean;
  error?: string;
}

export interface Notice {
  id: number;
  kind: 'info' | 'error';
  text: string;
}

export interface ChatState {
  readonly me: { user_id: string; username: string; display_name?: string };
  readonly connection: SocketState;
  readonly connectionDetail: string | undefined;
  readonly conversations: readonly Conversation[];
  readonly listLoading: boolean;
  readonly listError: string | undefined;
  readonly logs: Readonly<Record<string, ConvoLog>>;
  readonly receipts: Readonly<Record<string, Receipts>>;
  readonly views: Readonly<Record<string, ConvoView>>;
  /** convo id -> user id -> ms until which the user counts as typing */
  readonly typing: Readonly<Record<string, Readonly<Record<string, number>>>>;
  readonly presence: Readonly<Record<string, Presence>>;
  readonly names: Readonly<Record<string, string>>;
  readonly notices: readonly Notice[];
  readonly openConvo: string | null;
  /** the message the open conversation was opened at (a search result, a message link) */
  readonly openSeq: number | null;
}

function byActivity(a: Conversation, b: Conversation): number {
  return b.last_activity - a.last_activity || b.last_seq - a.last_seq || a.id.localeCompare(b.id);
}

function newClientMsgId(): string {
  if (typeof crypto !== 'undefined' && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error) return e.message;
  return 'Something went wrong.';
}

/** Why the server refused a change of a conversation (title, topic, members, roles), in words. */
export function manageErrorText(e: unknown): string {
  if (!(e instanceof ApiError)) return errorText(e);
  switch (e.code) {
    case 'not_allowed':
      return 'Your role in this conversation does not allow that.';
    case 'last_owner':
      return 'You are the only owner: make someone else an owner first.';
    case 'no_such_member':
      return 'They are not a member of this conversation any more.';
    case 'direct_conversation':
      return 'The members of a direct conversation never change.';
    case 'not_found':
    case 'not_member':
      return 'This conversation is gone, or you are not a member any more.';
    case 'invalid':
    case 'invalid_request':
      return `Refused: ${e.message}.`;
    default:
      return e.message;
  }
}

/** Why the server refused a reaction (an error frame answering message.react), in words. */
export function reactionErrorText(code: string, message: string): string {
  switch (code) {
    case 'deleted':
      return 'That message was deleted: it takes no reactions.';
    case 'too_old':
      return 'That message is too old to react to.';
    case 'too_many_reactions':
      return 'That message has as many different reactions as it can take: pick one of those.';
    case 'no_such_message':
      return 'That message is not there any more.';
    case 'not_member':
    case 'no_such_conversation':
      return 'You are not a member of this conversation any more.';
    case 'invalid':
      return 'That reaction is not one the server takes.';
    case 'rate_limited':
      return 'Too many reactions at once: try again in a moment.';
    default:
      return `Your reaction was not saved: ${message || code}.`;
  }
}

/** A conversation's title in quotes, for a notice. */
function quoted(title: string): string {
  return `“${title}”`;
}

export class ChatClient {
  private state: ChatState;
  private readonly listeners = new Set<() => void>();
  private readonly socket: ChatSocket;
  private readonly loaded = new Set<string>();
  private readonly backfilling = new Set<string>();
  private readonly gapTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly sentAt = new Map<string, number>();
  private readonly myRead = new Map<string, number>();
  private readonly typingSentAt = new Map<string, number>();
  private readonly typingIdle = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly subscribed = new Set<string>();
  /** presence.subscribe answered not_visible or unavailable, asked again since the last update */
  private presenceRetries = 0;
  /** user ids whose username was asked for (GET /users/{id}), answered or not */
  private readonly nameAsked = new Set<string>();
  private housekeeping: ReturnType<typeof setInterval> | null = null;
  /** conversations I left or was removed from: when, so that a lagging list does not bring
   * them back */
  private readonly departed = new Map<string, number>();
  /** when a conversation.update frame last changed a conversation's title, topic, members or
   * roles */
  private readonly frameAt = new Map<string, number>();
  private readonly listRetries = new Map<string, number>();
  private listReload: Promise<void> | null = null;
  private listReloadAgain = false;
  private noticeSeq = 0;
  /** per conversation, the highest seq_no the view has had on screen */
  private readonly seen = new Map<string, number>();
  private readonly tracksSight = typeof IntersectionObserver !== 'undefined';
  private stopped = false;
  /** "convo\nseq" -> what recent message.reaction frames said of that message */
  private readonly reactionNotes = new Map<string, ReactionNote>();
  /** sockets opened so far: after the first, frames may have been missed */
  private opens = 0;
  /** loaded conversations whose latest page is asked for again when next opened (a
   * reconnect may have missed reactions, edits and deletions) */
  private readonly stale = new Set<string>();
  private readonly outboxKey: string;
  /** per conversation, which open asked for the page on screen (a later open wins) */
  private readonly openToken = new Map<string, number>();
  /** when I last muted or unmuted a conversation (a list read just before keeps the old say) */
  private readonly muteAt = new Map<string, number>();
  /** told of every new message from someone else (desktop notifications) */
  private readonly incoming = new Set<(m: Message, c: Conversation | undefined) => void>();
  /** the largest attachment the server takes, once one of its answers said it */
  attachmentMaxBytes: number | null = null;
  /** short-lived download URLs of attachments, kept until shortly before they expire */
  readonly links = new LinkCache((convo, att) => this.api.attachmentLinks(convo, att));
  private readonly onVisible = () => {
    if (document.visibilityState === 'visible' && this.state.openConvo) this.markRead(this.state.openConvo);
  };

  constructor(
    private readonly api: Api,
    session: Session,
  ) {
    this.outboxKey = `kchat.outbox.${session.user_id}`;
    this.state = {
      me: { user_id: session.user_id, username: session.username },
      connection: 'connecting',
      connectionDetail: undefined,
      conversations: [],
      listLoading: true,
      listError: undefined,
      logs: {},
      receipts: {},
      views: {},
      typing: {},
      presence: {},
      names: { [session.user_id]: session.username },
      notices: [],
      openConvo: null,
      openSeq: null,
    };
    this.socket = new ChatSocket((fresh) => this.token(fresh), {
      state: (s, detail) => this.set({ connection: s, connectionDetail: detail }),
      open: () => this.onOpen(),
      frame: (f) => this.onFrame(f),
    });
    this.restoreOutbox();
  }

  /** Logging out: what this browser kept for the user goes (unsent messages included). */
  forget(): void {
    this.stop();
    try {
      localStorage.removeItem(this.outboxKey);
    } catch {
      // nothing stored
    }
  }

  // ---- React glue --------------------------------------------------------------------

  subscribe = (fn: () => void): (() => void) => {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  };

  getState = (): ChatState => this.state;

  /** Calls fn with each new message from someone else as it arrives, with its conversation
   * (as the list has it, when it does). */
  onIncoming(fn: (m: Message, c: Conversation | undefined) => void): () => void {
    this.incoming.add(fn);
    return () => this.incoming.delete(fn);
  }

  private set(patch: Partial<ChatState>): void {
    this.state = { ...this.state, ...patch };
    for (const fn of this.listeners) fn();
  }

  private setLog(id: string, log: ConvoLog): void {
    if (this.state.logs[id] === log) return;
    this.set({ logs: { ...this.state.logs, [id]: log } });
    this.resolveNames(log.messages.map((m) => m.sender_id));
  }

  private log(id: string): ConvoLog {
    return this.state.logs[id] ?? emptyLog;
  }

  private setView(id: string, patch: Partial<ConvoView>): void {
    const old = this.state.views[id] ?? { loadingLatest: false, loadingOlder: false };
    const next: ConvoView = { ...old, ...patch };
    if (patch.error === undefined && 'error' in patch) delete next.error;
    this.set({ views: { ...this.state.views, [id]: next } });
  }

  notify(kind: Notice['kind'], text: string): void {
    const notices = [...this.state.notices, { id: ++this.noticeSeq, kind, text }].slice(-MAX_NOTICES);
    this.set({ notices });
  }

  dismissNotice(id: number): void {
    this.set({ notices: this.state.notices.filter((n) => n.id !== id) });
  }

  // ---- life cycle --------------------------------------------------------------------

  start(): void {
    this.stopped = false;
    this.socket.start();
    void this.reloadConversations();
    this.api.myDisplayName().then(
      (display_name) => this.set({ me: { ...this.state.me, display_name } }),
      () => undefined, // shown as the username until the next start
    );
    document.addEventListener('visibilitychange', this.onVisible);
    window.addEventListener('focus', this.onVisible);
    this.housekeeping = setInterval(() => this.tick(), 1000);
  }

  stop(): void {
    this.stopped = true;
    this.socket.stop();
    document.removeEventListener('visibilitychange', this.onVisible);
    window.removeEventListener('focus', this.onVisible);
    if (this.housekeeping) clearInterval(this.housekeeping);
    for (const t of this.gapTimers.values()) clearTimeout(t);
    for (const t of this.typingIdle.values()) clearTimeout(t);
    this.gapTimers.clear();
    this.typingIdle.clear();
  }

  private async token(fresh: boolean): Promise<string> {
    if (fresh) {
      const s = await this.api.refresh();
      if (!s) throw new ApiError(401, 'logged_out', 'Your session has ended; log in again.');
      return s.access_token;
    }
    return this.api.accessToken();
  }

  private send(frame: ClientFrame): boolean {
    return this.socket.send(frame);
  }

  private onOpen(): void {
    // resend what was not acked, in the order it was written, with the same client_msg_id
    for (const [id, log] of Object.entries(this.state.logs)) {
      for (const p of log.pending) {
        if (p.state !== 'failed') this.transmit(id, p);
      }
      if (this.loaded.has(id) && !this.isDetached(id)) {
        this.send({ type: 'sync', convo_id: id, since_seq: contiguousTop(log) });
      }
    }
    if (this.opens++ > 0) {
      // frames were missed while the socket was down (a sync replays only new messages)
      for (const id of this.loaded) this.stale.add(id);
      const open = this.state.openConvo;
      if (open && this.loaded.has(open) && !this.isDetached(open)) void this.refreshLatest(open);
    }
    this.subscribed.clear();
    this.subscribePresence();
    this.myRead.clear(); // read markers sent on the old socket may have been lost: send again
    if (this.state.openConvo) this.markRead(this.state.openConvo);
    void this.reloadConversations();
  }

  /** Once a second: typing indicators that lapsed, sends that were never acked. */
  private tick(): void {
    const now = Date.now();
    let typing = this.state.typing;
    for (const [cid, users] of Object.entries(typing)) {
      const live = Object.entries(users).filter(([, until]) => until > now);
      if (live.length !== Object.keys(users).length) {
        typing = { ...typing, [cid]: Object.fromEntries(live) };
      }
    }
    if (typing !== this.state.typing) this.set({ typing });
    // a mute whose time ran out: the conversation counts and notifies again
    if (this.state.conversations.some((c) => c.muted && typeof c.muted_until === 'number' && c.muted_until <= now)) {
      this.set({
        conversations: this.state.conversations.map((c) =>
          c.muted && typeof c.muted_until === 'number' && c.muted_until <= now ? { ...c, muted: false, muted_until: null } : c,
        ),
      });
    }
    for (const [k, n] of this.reactionNotes) {
      if (now - n.at > REACTION_FRESH_MS) this.reactionNotes.delete(k);
    }
    if (this.socket.current !== 'open') return;
    for (const [id, log] of Object.entries(this.state.logs)) {
      for (const p of log.pending) {
        const at = this.sentAt.get(p.client_msg_id);
        if (p.state === 'sending' && at !== undefined && now - at > ACK_TIMEOUT_MS) this.transmit(id, p);
      }
    }
  }

  // ---- conversations -----------------------------------------------------------------

  /** GET /conversations; concurrent calls share one request and one follow-up. */
  reloadConversations(): Promise<void> {
    if (this.listReload) {
      this.listReloadAgain = true;
      return this.listReload;
    }
    const run = async () => {
      do {
        this.listReloadAgain = false;
        try {
          const list = await this.api.conversations();
          if (this.stopped) return;
          this.mergeConversations(list);
          this.set({ listLoading: false, listError: undefined });
        } catch (e) {
          this.set({ listLoading: false, listError: errorText(e) });
        }
      } while (this.listReloadAgain && !this.stopped);
    };
    this.listReload = run().finally(() => {
      this.listReload = null;
    });
    return this.listReload;
  }

  /** A conversation from the server merged with what the client holds of it: the list may lag
   * behind the socket, so what the socket already showed is kept. */
  private mergeOne(c: Conversation, prev: Conversation | undefined, names: Record<string, string>, receipts: Record<string, Receipts>, fresh: boolean): Conversation {
    for (const m of c.members) {
      if (m.username) names[m.user_id] = m.username;
      if (m.read_seq !== undefined && m.user_id !== this.state.me.user_id) {
        receipts[c.id] = applyRead(receipts[c.id] ?? emptyReceipts, m.user_id, m.read_seq);
      }
      if (m.delivered_seq !== undefined && m.user_id !== this.state.me.user_id) {
        receipts[c.id] = applyDelivered(receipts[c.id] ?? emptyReceipts, m.delivered_seq);
      }
    }
    // a rename, a topic, members or roles a frame changed a moment ago: the read model the
    // list comes from may not have it yet
    if (prev && !fresh && Date.now() - (this.frameAt.get(c.id) ?? -Infinity) < FRAME_FRESH_MS) {
      const read = new Map(c.members.map((m) => [m.user_id, m]));
      c = {
        ...c,
        title: prev.title,
        topic: prev.topic,
        members: prev.members.map((m) => ({ ...read.get(m.user_id), ...m })),
      };
    }
    // a mute set here a moment ago wins over a list read before it
    if (prev && Date.now() - (this.muteAt.get(c.id) ?? -Infinity) < FRAME_FRESH_MS) {
      c = { ...c, muted: prev.muted ?? false, muted_until: prev.muted_until ?? null };
    }
    if (prev && prev.last_seq > c.last_seq) {
      return { ...c, last_seq: prev.last_seq, last_message: prev.last_message, last_activity: prev.last_activity, unread: prev.unread };
    }
    if (c.id === this.state.openConvo && document.visibilityState === 'visible') {
      const seen = this.tracksSight ? (this.seen.get(c.id) ?? 0) : c.last_seq;
      return { ...c, unread: Math.max(0, Math.min(c.unread, c.last_seq - seen)) };
    }
    return c;
  }

  /** Whether a conversation I left lately should stay out of a list that still has it. */
  private stillDeparted(id: string): boolean {
    const at = this.departed.get(id);
    if (at === undefined) return false;
    if (Date.now() - at < DEPARTED_MS) return true;
    this.departed.delete(id);
    return false;
  }

  private mergeConversations(list: Conversation[]): void {
    const names = { ...this.state.names };
    const receipts = { ...this.state.receipts };
    const old = new Map(this.state.conversations.map((c) => [c.id, c]));
    const merged = list.filter((c) => !this.stillDeparted(c.id)).map((c) => this.mergeOne(c, old.get(c.id), names, receipts, false));
    merged.sort(byActivity);
    this.set({ conversations: merged, names, receipts });
    this.resolveNames(merged.flatMap((c) => [...c.members.map((m) => m.user_id), ...(c.last_message ? [c.last_message.sender_id] : [])]));
    for (const c of merged) {
      if (this.loaded.has(c.id)) {
        this.setLog(c.id, noteKnownLast(this.log(c.id), c.last_seq));
        this.checkGap(c.id, 0);
      }
    }
    this.subscribePresence();
    if (this.state.openConvo) this.markRead(this.state.openConvo);
  }

  /** Asks once per user id for the usernames not known yet, and keeps what comes back. */
  private resolveNames(ids: Iterable<string>): void {
    for (const id of ids) {
      if (this.state.names[id] !== undefined || this.nameAsked.has(id) || this.nameAsked.size >= 10000) continue;
      this.nameAsked.add(id);
      this.api.userName(id).then(
        (name) => {
          if (name !== null && !this.stopped) this.set({ names: { ...this.state.names, [id]: name } });
        },
        () => this.nameAsked.delete(id), // a transient failure: ask again next time
      );
    }
  }

  private updateConversation(id: string, fn: (c: Conversation) => Conversation): void {
    const i = this.state.conversations.findIndex((c) => c.id === id);
    if (i < 0) return;
    const list = this.state.conversations.slice();
    list[i] = fn(list[i] as Conversation);
    list.sort(byActivity);
    this.set({ conversations: list });
  }

  private subscribePresence(): void {
    const ids = new Set<string>();
    for (const c of this.state.conversations) {
      for (const m of c.members) {
        if (m.user_id !== this.state.me.user_id && !this.subscribed.has(m.user_id)) ids.add(m.user_id);
      }
    }
    if (ids.size === 0) return;
    const user_ids = [...ids].slice(0, 1000);
    if (this.send({ type: 'presence.subscribe', user_ids })) for (const u of user_ids) this.subscribed.add(u);
  }

  /** A username (or, failing that, a user id) as a user id; an ApiError names what is wrong. */
  private async resolveEntry(e: string): Promise<string> {
    try {
      return await this.api.lookupUser(e);
    } catch (err) {
      if (!(err instanceof ApiError) || err.code !== 'no_such_user' || !looksLikeUserId(e)) throw err;
      const name = await this.api.userName(e);
      if (name === null) throw err;
      this.set({ names: { ...this.state.names, [e]: name } });
      return e;
    }
  }

  /** Sets my display name: null when stored, or why not. */
  async setDisplayName(name: string): Promise<string | null> {
    try {
      const display_name = await this.api.setDisplayName(name);
      this.set({ me: { ...this.state.me, display_name } });
      return null;
    } catch (e) {
      return e instanceof Error ? e.message : 'Could not set the name.';
    }
  }

  /** Suggestions for the people picker; their names are remembered for display. */
  async findPeople(prefix: string): Promise<Person[]> {
    const found = await this.api.findPeople(prefix);
    const fresh = found.filter((p) => this.state.names[p.user_id] !== p.username);
    if (fresh.length) {
      const names = { ...this.state.names };
      for (const p of fresh) names[p.user_id] = p.username;
      this.set({ names });
    }
    return found;
  }

  async createConversation(title: string, entries: string[]): Promise<string> {
    const members: string[] = [];
    for (const raw of entries) {
      const e = raw.trim().replace(/^@/, '');
      if (!e) continue;
      const id = await this.resolveEntry(e);
      if (id !== this.state.me.user_id && !members.includes(id)) members.push(id);
    }
    if (members.length === 0) throw new ApiError(400, 'no_members', 'Add at least one other person.');
    // one other person and no title: their direct conversation, the same one each time
    const kind = members.length === 1 && title.trim() === '' ? 'direct' : 'group';
    const c = await this.api.createConversation(title.trim(), members, kind);
    const conv: Conversation = { ...c, last_activity: c.last_activity || Date.now() };
    if (!this.state.conversations.some((x) => x.id === conv.id)) {
      this.set({ conversations: [conv, ...this.state.conversations].sort(byActivity) });
    }
    this.subscribePresence();
    void this.reloadConversations();
    return conv.id;
  }

  // ---- managing a conversation: title, topic, members, roles ------------------------

  /** A conversation body the server sent after a change (it is up to date): into the list. */
  private applyBody(c: Conversation): void {
    const names = { ...this.state.names };
    const receipts = { ...this.state.receipts };
    const prev = this.state.conversations.find((x) => x.id === c.id);
    const next = this.mergeOne(c, prev, names, receipts, true);
    this.frameAt.set(c.id, Date.now());
    const list = prev ? this.state.conversations.map((x) => (x.id === c.id ? next : x)) : [next, ...this.state.conversations];
    list.sort(byActivity);
    this.set({ conversations: list, names, receipts });
    this.resolveNames(next.members.map((m) => m.user_id));
    this.subscribePresence();
  }

  /** Renames a group or sets its topic ("" clears it): null when done, or why not. */
  async updateConversationInfo(id: string, change: { title?: string; topic?: string }): Promise<string | null> {
    try {
      this.applyBody(await this.api.updateConversation(id, change));
      return null;
    } catch (e) {
      return manageErrorText(e);
    }
  }

  /** Adds people (usernames, or user ids) to a group: null when done, or why not. */
  async addPeople(id: string, entries: string[]): Promise<string | null> {
    try {
      const conv = this.state.conversations.find((c) => c.id === id);
      const members: string[] = [];
      for (const raw of entries) {
        const e = raw.trim().replace(/^@/, '');
        if (!e) continue;
        const uid = await this.resolveEntry(e);
        if (!members.includes(uid) && !conv?.members.some((m) => m.user_id === uid)) members.push(uid);
      }
      if (members.length === 0) return 'They are all members already.';
      this.applyBody(await this.api.addMembers(id, members));
      return null;
    } catch (e) {
      return manageErrorText(e);
    }
  }

  /** Removes a member, or (my own id) leaves: null when done, or why not. */
  async removeMember(id: string, userId: string): Promise<string | null> {
    try {
      await this.api.removeMember(id, userId);
    } catch (e) {
      return manageErrorText(e);
    }
    const me = this.state.me.user_id;
    if (userId === me) {
      this.forgetConversation(id, me);
      return null;
    }
    const r = applyConversationUpdate(this.state.conversations, { convo_id: id, change: 'members_removed', members: [userId], left_seq: null }, me);
    if (r.conversations !== this.state.conversations) {
      this.frameAt.set(id, Date.now());
      this.set({ conversations: r.conversations });
    }
    return null;
  }

  /** Gives a member a role: null when done, or why not. */
  async setRole(id: string, userId: string, role: Role): Promise<string | null> {
    try {
      this.applyBody(await this.api.setRole(id, userId, role));
      return null;
    } catch (e) {
      return manageErrorText(e);
    }
  }

  /**
   * I am not a member any more (I left, or `actor` removed me): the conversation goes from
   * the list and its view closes, with a notice; what the client held of it goes too (its
   * unsent messages could not be sent).
   */
  private forgetConversation(id: string, actor: string | undefined): void {
    const me = this.state.me.user_id;
    this.departed.set(id, Date.now());
    const conv = this.state.conversations.find((c) => c.id === id);
    this.loaded.delete(id);
    this.seen.delete(id);
    this.myRead.delete(id);
    const t = this.gapTimers.get(id);
    if (t) clearTimeout(t);
    this.gapTimers.delete(id);
    const logs = { ...this.state.logs };
    for (const p of logs[id]?.pending ?? []) this.sentAt.delete(p.client_msg_id);
    delete logs[id];
    const typing = { ...this.state.typing };
    delete typing[id];
    const views = { ...this.state.views };
    delete views[id];
    this.set({
      conversations: this.state.conversations.filter((c) => c.id !== id),
      logs,
      typing,
      views,
      openConvo: this.state.openConvo === id ? null : this.state.openConvo,
      openSeq: this.state.openConvo === id ? null : this.state.openSeq,
    });
    this.saveOutbox();
    if (!conv) return;
    const name = quoted(titleOf(conv, this.state.names, me));
    if (actor === me) this.notify('info', `You left ${name}.`);
    else if (actor) this.notify('info', `${this.state.names[actor] ?? 'Someone'} removed you from ${name}.`);
    else this.notify('info', `You were removed from ${name}.`);
  }

  private onConversationUpdate(u: ConversationUpdate): void {
    const me = this.state.me.user_id;
    if ((u.change === 'members_added' || u.change === 'created') && u.members.includes(me)) {
      this.departed.delete(u.convo_id); // added (again)
    }
    if (u.change === 'members_removed' && u.members.includes(me)) {
      this.forgetConversation(u.convo_id, u.actor_id);
      return;
    }
    const r = applyConversationUpdate(this.state.conversations, u, me);
    if (r.conversations !== this.state.conversations) {
      this.frameAt.set(u.convo_id, Date.now());
      this.set({ conversations: r.conversations });
    }
    if (u.change === 'members_added') {
      this.resolveNames(u.members);
      this.subscribePresence();
    }
    if (u.actor_id) this.resolveNames([u.actor_id]);
    if (r.reload) this.reloadFor(u.convo_id);
  }

  /** Reloads the list for a conversation it should hold (I was added to it); asks again a few
   * times while the read model has not caught up. */
  private reloadFor(id: string): void {
    void this.reloadConversations().then(() => {
      if (this.stopped || this.state.conversations.some((c) => c.id === id) || this.departed.has(id)) {
        this.listRetries.delete(id);
        return;
      }
      const n = (this.listRetries.get(id) ?? 0) + 1;
      if (n > LIST_RETRIES) {
        this.listRetries.delete(id);
        return;
      }
      this.listRetries.set(id, n);
      setTimeout(() => this.reloadFor(id), 500 * 2 ** (n - 1));
    });
  }

  // ---- one conversation --------------------------------------------------------------

  /**
   * Opens a conversation (null: none), at its latest messages, or `at` message seq_no (a
   * search result, a message link): a message already loaded is simply shown; else the page
   * about it (`around_seq`) replaces what was loaded, which then grows both ways as the
   * reader scrolls until it joins the newest messages. Opening a conversation that shows an
   * older part without `at` brings back its latest messages.
   */
  open(id: string | null, at?: number): void {
    const seq = id === null ? null : (at ?? null);
    if (this.state.openConvo === id && this.state.openSeq === seq && !(id !== null && at === undefined && this.isDetached(id))) return;
    this.set({ openConvo: id, openSeq: seq });
    if (id === null) return;
    if (at !== undefined) {
      if (this.loaded.has(id) && hasSeq(this.log(id), at)) this.markRead(id);
      else void this.loadAround(id, at);
      return;
    }
    if (!this.loaded.has(id)) void this.loadLatest(id);
    else if (this.isDetached(id)) void this.jumpToLatest(id);
    else {
      if (this.stale.has(id)) void this.refreshLatest(id);
      this.markRead(id);
    }
  }

  /** Whether the conversation shows an older part that does not reach its newest messages. */
  isDetached(id: string): boolean {
    return this.state.views[id]?.detached === true;
  }

  private nextOpen(id: string): number {
    const n = (this.openToken.get(id) ?? 0) + 1;
    this.openToken.set(id, n);
    return n;
  }

  /** The page about message `seq` (`around_seq`), in place of what was loaded. */
  private async loadAround(id: string, seq: number): Promise<void> {
    const token = this.nextOpen(id);
    this.setView(id, { loadingLatest: true, error: undefined });
    try {
      const page = await this.api.messages(id, { around_seq: seq, limit: PAGE_SIZE });
      if (this.stopped || this.openToken.get(id) !== token) return;
      if (page.messages.length === 0) {
        // nothing there (a link past the end): the latest messages instead
        this.setView(id, { loadingLatest: false, detached: false });
        if (!this.loaded.has(id)) await this.loadLatest(id);
        return;
      }
      const old = this.log(id);
      const conv = this.state.conversations.find((c) => c.id === id);
      let log: ConvoLog = { messages: [], pending: old.pending, knownLast: Math.max(old.knownLast, conv?.last_seq ?? 0), reachedStart: false };
      log = this.mergeIn(log, page.messages);
      if (page.prev_cursor === null) log = markReachedStart(log);
      const detached = page.next_cursor !== null;
      this.loaded.add(id);
      this.stale.delete(id);
      this.setView(id, { loadingLatest: false, loadingNewer: false, detached });
      this.setLog(id, log);
      if (!detached) this.attach(id);
      else this.markRead(id);
    } catch (e) {
      if (this.openToken.get(id) === token) this.setView(id, { loadingLatest: false, error: errorText(e) });
    }
  }

  /** The next newer page of a detached conversation; when it is the last, the conversation
   * is live again (a sync and the gap check bring what came since). */
  async loadNewer(id: string): Promise<void> {
    const view = this.state.views[id];
    if (!view?.detached || view.loadingNewer || view.loadingLatest) return;
    const after = contiguousTop(this.log(id));
    if (after === 0) return;
    const token = this.openToken.get(id);
    this.setView(id, { loadingNewer: true, error: undefined });
    try {
      const page = await this.api.messages(id, { since_seq: after, limit: PAGE_SIZE });
      if (this.stopped || this.openToken.get(id) !== token || !this.isDetached(id)) return;
      this.setLog(id, this.mergeIn(this.log(id), page.messages));
      const joined = page.next_cursor === null;
      this.setView(id, joined ? { loadingNewer: false, detached: false } : { loadingNewer: false });
      if (joined) this.attach(id);
    } catch (e) {
      this.setView(id, { error: errorText(e) });
    } finally {
      if (this.state.views[id]?.loadingNewer) this.setView(id, { loadingNewer: false });
    }
  }

  /** A detached conversation back at its newest messages, at once (the "latest" button, or
   * a message sent from there). */
  async jumpToLatest(id: string): Promise<void> {
    if (!this.isDetached(id)) return;
    this.nextOpen(id);
    const old = this.log(id);
    this.loaded.delete(id);
    this.setView(id, { detached: false, loadingNewer: false });
    this.setLog(id, { ...emptyLog, pending: old.pending, knownLast: old.knownLast });
    // what an older part knows of the end may be short of it: the server's newest page
    await this.loadLatest(id, true);
  }

  /** A conversation's messages reach the newest ones again: catch up live. */
  private attach(id: string): void {
    this.send({ type: 'sync', convo_id: id, since_seq: contiguousTop(this.log(id)) });
    this.checkGap(id, 0);
    this.markRead(id);
  }

  /** Mutes a conversation for me for `forS` seconds, or (null) until I unmute it; `false`
   * unmutes it. null when done, or why not. */
  async setMute(id: string, forS: number | null | false): Promise<string | null> {
    try {
      const r = forS === false ? await this.api.unmute(id) : await this.api.mute(id, forS);
      this.muteAt.set(id, Date.now());
      this.updateConversation(id, (c) => ({ ...c, muted: r.muted, muted_until: r.muted_until }));
      return null;
    } catch (e) {
      return manageErrorText(e);
    }
  }

  /** Messages from history or the socket merged into a log; what a message.reaction frame
   * said a moment ago wins over a page that may be older. */
  private mergeIn(log: ConvoLog, messages: readonly Message[]): ConvoLog {
    let next = mergeMessages(log, messages, this.state.me.user_id);
    if (this.reactionNotes.size === 0) return next;
    const now = Date.now();
    for (const m of messages) {
      const n = this.reactionNotes.get(`${m.convo_id}\n${m.seq_no}`);
      if (n && now - n.at <= REACTION_FRESH_MS) next = applyReaction(next, m.seq_no, n.reactions, n.mine);
    }
    return next;
  }

  /** The latest page again (after a reconnect): reactions, edits and deletions the socket
   * missed. */
  private async refreshLatest(id: string): Promise<void> {
    this.stale.delete(id);
    const token = this.openToken.get(id);
    try {
      const page = await this.api.messages(id, { limit: PAGE_SIZE });
      if (this.stopped || !this.loaded.has(id) || this.openToken.get(id) !== token || this.isDetached(id)) return;
      this.setLog(id, this.mergeIn(this.log(id), page.messages));
      this.checkGap(id);
    } catch {
      this.stale.add(id); // asked again when next opened
    }
  }

  /** The latest page: below the newest message known, or (`newest`, when what is known may
   * be short of it) the server's newest. */
  private async loadLatest(id: string, newest = false): Promise<void> {
    const token = this.nextOpen(id);
    this.setView(id, { loadingLatest: true, error: undefined });
    try {
      const conv = this.state.conversations.find((c) => c.id === id);
      const last = Math.max(conv?.last_seq ?? 0, this.log(id).knownLast);
      const page =
        last > 0 && !newest
          ? await this.api.messages(id, { before_seq: last + 1, limit: PAGE_SIZE })
          : await this.api.messages(id, { limit: PAGE_SIZE });
      if (this.openToken.get(id) !== token) return; // opened at a message meanwhile
      let log = this.mergeIn(this.log(id), page.messages);
      log = noteKnownLast(log, last);
      if (page.messages.length < PAGE_SIZE && (page.messages.length > 0 || last === 0)) {
        log = markReachedStart(log);
      }
      this.loaded.add(id);
      this.setLog(id, log);
      this.setView(id, { loadingLatest: false });
      // live frames may have raced the page: ask the gateway for whatever came after it
      this.send({ type: 'sync', convo_id: id, since_seq: contiguousTop(log) });
      this.checkGap(id, 0);
      this.markRead(id);
    } catch (e) {
      this.setView(id, { loadingLatest: false, error: errorText(e) });
    }
  }

  async loadOlder(id: string): Promise<void> {
    const view = this.state.views[id];
    const log = this.log(id);
    const before = oldestSeq(log);
    if (view?.loadingOlder || log.reachedStart || before === null || before <= 1) {
      if (before !== null && before <= 1) this.setLog(id, markReachedStart(log));
      return;
    }
    const token = this.openToken.get(id);
    this.setView(id, { loadingOlder: true, error: undefined });
    try {
      const page = await this.api.messages(id, { before_seq: before, limit: PAGE_SIZE });
      if (this.openToken.get(id) !== token) {
        // opened again meanwhile (at a message, or at the latest): this page may not join it
        this.setView(id, { loadingOlder: false });
        return;
      }
      let next = this.mergeIn(this.log(id), page.messages);
      if (page.messages.length === 0 || page.messages.length < PAGE_SIZE) next = markReachedStart(next);
      this.setLog(id, next);
      this.setView(id, { loadingOlder: false });
    } catch (e) {
      this.setView(id, { loadingOlder: false, error: errorText(e) });
    }
  }

  /**
   * Loads older pages until the message at seq_no `seq` is loaded (to show a quoted message):
   * true when it is. Only older history is loaded this way: a seq_no inside what is loaded
   * but missing is a gap, which the backfill fills anyway. Gives up after JUMP_PAGES pages.
   */
  async loadThrough(id: string, seq: number): Promise<boolean> {
    if (!this.loaded.has(id) || seq < 1) return false;
    const token = this.openToken.get(id);
    this.setView(id, { loadingOlder: true, error: undefined });
    try {
      for (let pages = 0; pages < JUMP_PAGES; pages++) {
        const log = this.log(id);
        if (hasSeq(log, seq)) return true;
        const before = oldestSeq(log);
        if (before === null || before <= seq || log.reachedStart) return false;
        const page = await this.api.messages(id, { before_seq: before, limit: BACKFILL_PAGE });
        if (this.stopped || !this.loaded.has(id) || this.openToken.get(id) !== token) return false;
        let next = this.mergeIn(this.log(id), page.messages);
        if (page.messages.length < BACKFILL_PAGE) next = markReachedStart(next);
        this.setLog(id, next);
      }
      return hasSeq(this.log(id), seq);
    } catch (e) {
      this.setView(id, { error: errorText(e) });
      return false;
    } finally {
      if (this.state.views[id]?.loadingOlder) this.setView(id, { loadingOlder: false });
    }
  }

  /** Schedules a backfill of the conversation's gap, if it has one. */
  private checkGap(id: string, grace = GAP_GRACE_MS): void {
    if (!this.loaded.has(id) || this.isDetached(id) || !findGap(this.log(id)) || this.gapTimers.has(id)) return;
    this.gapTimers.set(
      id,
      setTimeout(() => {
        this.gapTimers.delete(id);
        void this.backfill(id);
      }, grace),
    );
  }

  private async backfill(id: string): Promise<void> {
    if (this.backfilling.has(id) || this.stopped) return;
    this.backfilling.add(id);
    let emptyTries = 0;
    let superseded = false;
    const token = this.openToken.get(id);
    try {
      for (;;) {
        const gap = this.isDetached(id) ? null : findGap(this.log(id));
        if (!gap) break;
        const page = await this.api.messages(id, { since_seq: gap.sinceSeq, limit: BACKFILL_PAGE });
        if (this.openToken.get(id) !== token) {
          superseded = true; // opened again meanwhile: checked again below, on what is loaded now
          break;
        }
        const before = contiguousTop(this.log(id));
        this.setLog(id, this.mergeIn(this.log(id), page.messages));
        if (contiguousTop(this.log(id)) > before) {
          emptyTries = 0;
          continue;
        }
        // history does not have it yet (the read model lags the socket): wait and ask again
        if (++emptyTries > 8) break;
        await new Promise((r) => setTimeout(r, 250 * emptyTries));
        if (this.stopped) return;
      }
      if (!superseded) {
        if (findGap(this.log(id)) && !this.isDetached(id)) this.setView(id, { error: 'Some messages could not be loaded yet.' });
        else if (this.state.views[id]?.error) this.setView(id, { error: undefined });
      }
    } catch (e) {
      this.setView(id, { error: errorText(e) });
    } finally {
      this.backfilling.delete(id);
    }
    if (superseded) this.checkGap(id, 0);
    this.markRead(id);
  }

  /** The view had messages up to seq_no on screen (IntersectionObserver): they may count as
   * read now. */
  sawUpTo(id: string, seq_no: number): void {
    if (seq_no <= (this.seen.get(id) ?? 0)) return;
    this.seen.set(id, seq_no);
    this.markRead(id);
  }

  /** Marks the open conversation read up to what has been on screen (where the browser can
   * tell: else up to what is loaded), if the page is visible. */
  markRead(id: string): void {
    if (id !== this.state.openConvo || document.visibilityState !== 'visible') return;
    const log = this.log(id);
    const top = Math.min(contiguousTop(log), this.tracksSight ? (this.seen.get(id) ?? 0) : Infinity);
    if (top > 0 && top > (this.myRead.get(id) ?? 0)) {
      if (this.send({ type: 'message.read', convo_id: id, seq_no: top })) this.myRead.set(id, top);
    }
    // what is left unread is what comes after what was read (all of it, once the newest was)
    const conv = this.state.conversations.find((c) => c.id === id);
    if (conv && conv.unread !== 0 && top > 0 && conv.last_seq - top < conv.unread) {
      this.updateConversation(id, (c) => ({ ...c, unread: Math.max(0, c.last_seq - top) }));
    }
  }

  // ---- sending -----------------------------------------------------------------------

  /** Edits one of my messages (content) or deletes it (null): null when sent, or why not.
   * The change shows when the server's message.update or message.delete comes back; a
   * refusal comes as an error notice. */
  changeMessage(id: string, seq_no: number, content: string | null): string | null {
    if (content !== null) {
      content = content.trim();
      if (!content) return 'Write something first, or delete the message.';
      if (utf8Bytes(content) > MAX_CONTENT_BYTES) return `At most ${MAX_CONTENT_BYTES} bytes.`;
    }
    const frame: ClientFrame =
      content === null ? { type: 'message.delete', convo_id: id, seq_no } : { type: 'message.edit', convo_id: id, seq_no, content };
    return this.send(frame) ? null : 'Not connected: try again in a moment.';
  }

  /** Sets my reaction to a message (null removes it): null when sent, or why not. One per
   * member and message: another one replaces mine. What it shows comes back in a
   * message.reaction frame (to every member); a refusal comes as an error notice. */
  react(id: string, seq_no: number, emoji: string | null): string | null {
    if (emoji !== null && !validReaction(emoji)) return 'That is not a reaction.';
    const m = messageAt(this.log(id), seq_no);
    if (m?.deleted) return 'That message was deleted.';
    return this.send({ type: 'message.react', convo_id: id, seq_no, emoji }) ? null : 'Not connected: try again in a moment.';
  }

  /** Queues a message (a reply to seq_no `replyTo`, when given, carrying the completed
   * uploads `attachments`); null when accepted, or why not. */
  sendMessage(id: string, text: string, replyTo?: number, attachments: readonly Attachment[] = []): string | null {
    const content = text.trim();
    if (content.length === 0 && attachments.length === 0) return 'Write something first.';
    if (utf8Bytes(content) > MAX_CONTENT_BYTES) return `A message has at most ${MAX_CONTENT_BYTES} bytes.`;
    if (attachments.length > MAX_ATTACHMENTS) return `A message carries at most ${MAX_ATTACHMENTS} files.`;
    const outboxSize = Object.values(this.state.logs).reduce((n, l) => n + l.pending.length, 0);
    if (outboxSize >= MAX_OUTBOX) return 'Too many messages are waiting to be sent.';
    const p: PendingMessage = {
      client_msg_id: newClientMsgId(),
      convo_id: id,
      content,
      created_at: Date.now(),
      state: 'queued',
      attempts: 0,
    };
    if (replyTo !== undefined && Number.isSafeInteger(replyTo) && replyTo >= 1) p.reply_to = replyTo;
    if (attachments.length > 0) p.attachments = attachments.slice();
    this.setLog(id, addPending(this.log(id), p));
    // written while looking at an older part: back to the newest messages, where it goes
    if (this.isDetached(id)) void this.jumpToLatest(id);
    this.stopTyping(id);
    this.transmit(id, p);
    this.saveOutbox();
    return null;
  }

  retry(id: string, client_msg_id: string): void {
    const p = this.log(id).pending.find((x) => x.client_msg_id === client_msg_id);
    if (p) this.transmit(id, { ...p, state: 'queued' });
  }

  discard(id: string, client_msg_id: string): void {
    this.setLog(id, removePending(this.log(id), client_msg_id));
    this.sentAt.delete(client_msg_id);
    this.saveOutbox();
  }

  private transmit(id: string, p: PendingMessage): void {
    // every attempt is the same frame: the same client_msg_id, content, reply_to and attachments
    const frame: ClientFrame = { type: 'message.send', convo_id: id, client_msg_id: p.client_msg_id, content: p.content };
    if (p.reply_to !== undefined) frame.reply_to = p.reply_to;
    if (p.attachments !== undefined && p.attachments.length > 0) frame.attachments = p.attachments.map((a) => a.id);
    const ok = this.send(frame);
    if (ok) this.sentAt.set(p.client_msg_id, Date.now());
    this.setLog(
      id,
      updatePending(this.log(id), p.client_msg_id, ok ? { state: 'sending', attempts: p.attempts + 1 } : { state: 'queued' }),
    );
  }

  private restoreOutbox(): void {
    let items: unknown;
    try {
      items = JSON.parse(localStorage.getItem(this.outboxKey) ?? '[]');
    } catch {
      items = [];
    }
    if (!Array.isArray(items)) return;
    const logs: Record<string, ConvoLog> = {};
    for (const it of items.slice(0, MAX_OUTBOX) as unknown[]) {
      if (typeof it !== 'object' || it === null) continue;
      const o = it as Record<string, unknown>;
      const { client_msg_id, convo_id, content, created_at, reply_to, attachments } = o;
      if (typeof client_msg_id !== 'string' || typeof convo_id !== 'string' || typeof content !== 'string') continue;
      const p: PendingMessage = {
        client_msg_id,
        convo_id,
        content,
        created_at: typeof created_at === 'number' ? created_at : Date.now(),
        state: 'queued',
        attempts: 0,
      };
      if (typeof reply_to === 'number' && Number.isSafeInteger(reply_to) && reply_to >= 1) p.reply_to = reply_to;
      const atts = parseAttachments(attachments);
      if (atts !== null && atts.length > 0) p.attachments = atts;
      if (p.content === '' && p.attachments === undefined) continue;
      logs[convo_id] = addPending(logs[convo_id] ?? emptyLog, p);
    }
    this.state = { ...this.state, logs };
  }

  private saveOutbox(): void {
    const items = Object.values(this.state.logs).flatMap((l) =>
      l.pending
        .filter((p) => p.state !== 'failed')
        .map(({ client_msg_id, convo_id, content, created_at, reply_to, attachments }) => ({ client_msg_id, convo_id, content, created_at, reply_to, attachments })),
    );
    try {
      if (items.length) localStorage.setItem(this.outboxKey, JSON.stringify(items));
      else localStorage.removeItem(this.outboxKey);
    } catch {
      // storage full: the bubbles stay in memory for this page
    }
  }

  // ---- attachments -------------------------------------------------------------------

  /** Starts the upload of a file to conversation `id` (presign, PUT, complete). */
  upload(id: string, file: File, on: Omit<UploadEvents, 'maxBytes'>): UploadHandle {
    return uploadFile(this.api, id, file, {
      ...on,
      maxBytes: (n) => {
        this.attachmentMaxBytes = n;
      },
    });
  }

  // ---- typing ------------------------------------------------------------------------

  /** The composer changed: tell the others, at most every few seconds, and stop when idle. */
  typing(id: string): void {
    const now = Date.now();
    if (now - (this.typingSentAt.get(id) ?? 0) > TYPING_SEND_EVERY_MS) {
      if (this.send({ type: 'typing.start', convo_id: id })) this.typingSentAt.set(id, now);
    }
    const t = this.typingIdle.get(id);
    if (t) clearTimeout(t);
    this.typingIdle.set(
      id,
      setTimeout(() => this.stopTyping(id), TYPING_IDLE_MS),
    );
  }

  stopTyping(id: string): void {
    const t = this.typingIdle.get(id);
    if (t) clearTimeout(t);
    this.typingIdle.delete(id);
    if (this.typingSentAt.has(id)) {
      this.typingSentAt.delete(id);
      this.send({ type: 'typing.stop', convo_id: id });
    }
  }

  // ---- search ------------------------------------------------------------------------

  /** One page of results for q; `cursor` (the previous page's next_cursor) for the next. */
  search(q: string, cursor?: string | null): Promise<SearchPage> {
    return this.api.search(q.trim().slice(0, 256), cursor);
  }

  // ---- frames from the gateway -------------------------------------------------------

  private onFrame(f: ServerFrame): void {
    switch (f.type) {
      case 'ack':
        this.onAck(f.ack);
        break;
      case 'message.create':
        this.onMessage(f.message);
        break;
      case 'message.delivery': {
        const r = this.state.receipts[f.convo_id] ?? emptyReceipts;
        if (f.user_id !== this.state.me.user_id) {
          this.set({ receipts: { ...this.state.receipts, [f.convo_id]: applyDelivered(r, f.seq_no) } });
        }
        break;
      }
      case 'message.read': {
        if (f.user_id === this.state.me.user_id) {
          // another tab or device of mine read it
          if (f.seq_no > (this.myRead.get(f.convo_id) ?? 0)) this.myRead.set(f.convo_id, f.seq_no);
          this.updateConversation(f.convo_id, (c) => ({ ...c, unread: Math.max(0, c.last_seq - f.seq_no) }));
        } else {
          const r = this.state.receipts[f.convo_id] ?? emptyReceipts;
          this.set({ receipts: { ...this.state.receipts, [f.convo_id]: applyRead(r, f.user_id, f.seq_no) } });
        }
        break;
      }
      case 'message.update':
        this.setLog(f.convo_id, patchMessage(this.log(f.convo_id), f.seq_no, { content: f.content }));
        break;
      case 'message.delete':
        this.reactionNotes.delete(`${f.convo_id}\n${f.seq_no}`);
        this.setLog(f.convo_id, patchMessage(this.log(f.convo_id), f.seq_no, { deleted: true }));
        break;
      case 'message.reaction': {
        // the frame's reactions are the message's now; mine changes only with a frame of mine
        const key = `${f.convo_id}\n${f.seq_no}`;
        const note: ReactionNote = { at: Date.now(), reactions: f.reactions };
        const mine = f.user_id === this.state.me.user_id ? f.emoji : this.reactionNotes.get(key)?.mine;
        if (mine !== undefined) note.mine = mine;
        this.reactionNotes.delete(key); // re-inserted last: the oldest go first
        if (this.reactionNotes.size < 10000) this.reactionNotes.set(key, note);
        this.setLog(f.convo_id, applyReaction(this.log(f.convo_id), f.seq_no, f.reactions, f.user_id === this.state.me.user_id ? f.emoji : undefined));
        break;
      }
      case 'sync.complete': {
        this.setLog(f.convo_id, noteKnownLast(this.log(f.convo_id), f.up_to_seq));
        if (this.isDetached(f.convo_id)) break; // caught up when it joins the newest messages
        if (f.more) this.send({ type: 'sync', convo_id: f.convo_id, since_seq: contiguousTop(this.log(f.convo_id)) });
        else this.checkGap(f.convo_id);
        break;
      }
      case 'conversation.update':
        this.onConversationUpdate(f.update);
        break;
      case 'typing': {
        if (f.user_id === this.state.me.user_id) break;
        const users = { ...(this.state.typing[f.convo_id] ?? {}) };
        if (f.typing) users[f.user_id] = Date.now() + (f.expires_in_ms ?? TYPING_SHOWN_MS);
        else delete users[f.user_id];
        this.set({ typing: { ...this.state.typing, [f.convo_id]: users } });
        break;
      }
      case 'presence.update':
        this.presenceRetries = 0;
        this.set({
          presence: { ...this.state.presence, [f.user_id]: { online: f.online, last_seen: f.last_seen } },
        });
        break;
      case 'system.notice':
        this.notify('info', f.message || f.code);
        break;
      case 'error':
        this.onError(f);
        break;
    }
  }

  /** An error frame: most answer one of this client's frames, which it simply sends again later. */
  private onError(f: Extract<ServerFrame, { type: 'error' }>): void {
    const convo = f.convo_id;
    switch (f.in_reply_to) {
      case 'sync':
        // history unavailable, rate limited, too many in flight: the gap check backfills by REST
        if (convo && f.code !== 'not_member') this.checkGap(convo, RETRY_AFTER_MS);
        return;
      case 'message.read':
        // sent again at the next chance (the processor may also refuse a marker that does not move)
        if (convo) this.myRead.delete(convo);
        return;
      case 'presence.subscribe':
        // refused (no conversation shared yet: a new one may still be on its way to the
        // server's read model) or unavailable: asked again shortly
        for (const u of f.user_ids ?? []) this.subscribed.delete(u);
        if (f.code === 'unavailable') this.subscribed.clear();
        if (this.presenceRetries++ < 5)
          setTimeout(() => {
            if (!this.stopped) this.subscribePresence();
          }, RETRY_AFTER_MS * this.presenceRetries);
        return;
      case 'typing.start':
      case 'typing.stop':
      case 'typing':
        return; // best effort
      case 'conversation.update':
      case 'member.remove':
      case 'member.role':
        return; // this client changes conversations over REST, whose answer says why
      case 'message.react':
        this.notify('error', reactionErrorText(f.code, f.message));
        // a message deleted before its frame reached this client: the latest page says so
        if (convo && (f.code === 'deleted' || f.code === 'no_such_message') && this.loaded.has(convo)) void this.refreshLatest(convo);
        return;
      default:
        this.notify('error', f.message || f.code);
    }
  }

  private findPendingConvo(client_msg_id: string): string | null {
    for (const [id, log] of Object.entries(this.state.logs)) {
      if (log.pending.some((p) => p.client_msg_id === client_msg_id)) return id;
    }
    return null;
  }

  private onAck(ack: Ack): void {
    const id = this.findPendingConvo(ack.client_msg_id);
    if (!id) return; // a retry's second ack, or another tab's message
    const p = this.log(id).pending.find((x) => x.client_msg_id === ack.client_msg_id);
    this.sentAt.delete(ack.client_msg_id);
    if (ack.status === 'error' && p && RETRIABLE_ACK.has(ack.error?.code ?? '')) {
      // the outcome is unknown or the server was busy: the same client_msg_id again, shortly
      this.setLog(id, updatePending(this.log(id), p.client_msg_id, { state: 'queued' }));
      setTimeout(() => {
        const again = this.log(id).pending.find((x) => x.client_msg_id === ack.client_msg_id);
        if (again && again.state === 'queued' && !this.stopped) this.transmit(id, again);
      }, RETRY_AFTER_MS);
      return;
    }
    if (ack.status === 'error' && ack.error?.code === 'no_such_message') {
      // the message it replies to is not an earlier one of this conversation
      ack = { ...ack, error: { code: ack.error.code, message: 'The message it replies to is not in this conversation.' } };
    }
    if (ack.status === 'error' && ack.error?.code === 'invalid_attachment') {
      // an upload that is not complete, not mine, or past its send window
      ack = { ...ack, error: { code: ack.error.code, message: `A file it carries cannot be sent (${ack.error.message || 'invalid attachment'}).` } };
    }
    const log = applyAck(this.log(id), ack, this.state.me.user_id);
    this.setLog(id, log);
    this.saveOutbox();
    if (ack.status !== 'error' && ack.seq_no !== undefined && p) {
      const m = log.messages.find((x) => x.seq_no === ack.seq_no);
      if (m) this.noteActivity(m);
      this.myRead.set(id, Math.max(this.myRead.get(id) ?? 0, contiguousTop(log)));
      this.checkGap(id);
    }
  }

  private onMessage(m: Message): void {
    if (!this.state.conversations.some((c) => c.id === m.convo_id)) {
      // a conversation someone just added me to
      void this.reloadConversations();
    }
    const before = this.state.conversations.find((c) => c.id === m.convo_id);
    const isNew = !before || m.seq_no > before.last_seq;
    if (this.isDetached(m.convo_id)) {
      // an older part is on screen: the message waits in history until the reader gets there
      this.setLog(m.convo_id, noteKnownLast(this.log(m.convo_id), m.seq_no));
    } else if (this.loaded.has(m.convo_id) || this.log(m.convo_id).pending.length > 0) {
      this.setLog(m.convo_id, this.mergeIn(this.log(m.convo_id), [m]));
      this.saveOutbox();
      this.checkGap(m.convo_id);
    }
    const typing = this.state.typing[m.convo_id];
    if (typing && typing[m.sender_id] !== undefined) {
      const users = { ...typing };
      delete users[m.sender_id];
      this.set({ typing: { ...this.state.typing, [m.convo_id]: users } });
    }
    this.noteActivity(m);
    if (m.convo_id === this.state.openConvo) this.markRead(m.convo_id);
    if (isNew && m.sender_id !== this.state.me.user_id && !m.deleted) {
      const conv = this.state.conversations.find((c) => c.id === m.convo_id);
      for (const fn of this.incoming) fn(m, conv);
    }
  }

  /** Moves the conversation up the list with its new last message, counting it unread. */
  private noteActivity(m: Message): void {
    const me = this.state.me.user_id;
    this.updateConversation(m.convo_id, (c) => {
      if (m.seq_no <= c.last_seq && c.last_message && c.last_message.seq_no >= m.seq_no) return c;
      const isNew = m.seq_no > c.last_seq;
      // on screen already? Where the view reports what it shows, markRead decides (a reader
      // scrolled up has not seen it)
      const seen = !this.tracksSight && m.convo_id === this.state.openConvo && document.visibilityState === 'visible';
      return {
        ...c,
        last_seq: Math.max(c.last_seq, m.seq_no),
        last_message: !c.last_message || m.seq_no >= c.last_message.seq_no ? m : c.last_message,
        last_activity: Math.max(c.last_activity, m.created_at || Date.now()),
        unread: isNew && m.sender_id !== me && !seen ? c.unread + (m.seq_no - c.last_seq) : c.unread,
      };
    });
  }
}
