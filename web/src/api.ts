// The REST side: auth with refresh-token rotation, conversations, history and search.
//
// The session (user, access token and its expiry, refresh token) is kept in localStorage so
// a reload stays logged in. The access token is refreshed before it expires (at 80% of its
// lifetime) and once more on a 401. Each refresh uses the refresh token once and stores the
// new pair it gets back (rotation); refreshes are single-flight, and across tabs they run
// under a Web Lock, each tab first re-reading the stored pair so that two tabs never spend
// the same refresh token.

import {
  MAX_PASSWORD,
  MAX_USERNAME,
  isObj,
  parseConversation,
  parseError,
  parseMessage,
  parseMute,
  parseAttachment,
  toMillis,
  validId,
  type Attachment,
  type Conversation,
  type Message,
  type Role,
} from './protocol';

export interface Session {
  user_id: string;
  username: string;
  access_token: string;
  refresh_token: string;
  /** ms since the epoch */
  access_expires_at: number;
}

/** Someone the people picker can suggest. */
export interface Person {
  user_id: string;
  username: string;
  display_name: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const STORAGE_KEY = 'kchat.session';
const REQUEST_TIMEOUT_MS = 15000;
const MAX_RESPONSE_CHARS = 8 * 1024 * 1024;

function loadSession(): Session | null {
  try {
    const raw = localStorage.getItem(STORAGE_KEY);
    if (!raw) return null;
    const v: unknown = JSON.parse(raw);
    if (!isObj(v)) return null;
    const { user_id, username, access_token, refresh_token, access_expires_at } = v;
    if (
      !validId(user_id) ||
      typeof username !== 'string' ||
      typeof access_token !== 'string' ||
      typeof refresh_token !== 'string' ||
      typeof access_expires_at !== 'number'
    ) {
      return null;
    }
    return { user_id, username, access_token, refresh_token, access_expires_at };
  } catch {
    return null;
  }
}

function saveSession(s: Session | null): void {
  try {
    if (s) localStorage.setItem(STORAGE_KEY, JSON.stringify(s));
    else localStorage.removeItem(STORAGE_KEY);
  } catch {
    // storage full or disabled: the session lives for this page only
  }
}

export const MIN_NEW_PASSWORD = 8;

export function checkCredentials(username: string, password: string, registering = false): string | null {
  const u = username.trim();
  if (u.length === 0) return 'Enter a username.';
  if (u.length > MAX_USERNAME) return `A username has at most ${MAX_USERNAME} characters.`;
  if (registering && !/^[A-Za-z0-9_.\-\u00a0-\uffff]+$/.test(u)) {
    return 'A username may hold letters, digits, "_", "." and "-".';
  }
  if (password.length === 0) return 'Enter a password.';
  if (registering && password.length < MIN_NEW_PASSWORD) return `A password has at least ${MIN_NEW_PASSWORD} characters.`;
  if (password.length > MAX_PASSWORD) return `A password has at most ${MAX_PASSWORD} characters.`;
  return null;
}

/** Where the next page of history is, as the query parameter to pass: `{before_seq}` for
 * older messages, `{since_seq}` for newer ones. */
export type Cursor = { before_seq: number } | { since_seq: number };

export interface MessagePage {
  messages: Message[];
  /** the next page in the direction read (older without since_seq, newer with it or with
   * around_seq); null when nothing is left that way */
  next_cursor: Cursor | null;
  /** around_seq pages only: where the older messages are (null at the first message) */
  prev_cursor?: Cursor | null;
}

/** A search result: the message, and its headline (the matched words between U+E000 and
 * U+E001), when the server sent one. */
export interface SearchHit {
  message: Message;
  headline: string | null;
}

/** Where and how to upload a file (`POST /attachments/presign`). */
export interface Presigned {
  id: string;
  method: string;
  url: string;
  /** to send with the upload, exactly */
  headers: Record<string, string>;
  key: string;
  /** the largest attachment the server takes */
  max_bytes: number | null;
}

/** Short-lived download URLs of an attachment (`GET /conversations/{id}/attachments/{att_id}`). */
export interface AttachmentLinks {
  url: string;
  thumb_url: string | null;
  /** ms since the epoch */
  expires_at: number;
  attachment: Attachment | null;
}

export interface SearchPage {
  hits: SearchHit[];
  next_cursor: string | null;
}

/** A history cursor from the server (`{"before_seq": n}` or `{"since_seq": n}`), or null. */
export function cursorOf(v: unknown): Cursor | null {
  if (!isObj(v)) return null;
  const b = v['before_seq'];
  const s = v['since_seq'];
  if (typeof b === 'number' && Number.isSafeInteger(b) && b >= 1) return { before_seq: b };
  if (typeof s === 'number' && Number.isSafeInteger(s) && s >= 0) return { since_seq: s };
  return null;
}

export class Api {
  private session: Session | null = loadSession();
  private refreshing: Promise<Session | null> | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly listeners = new Set<(s: Session | null) => void>();

  constructor(private readonly base = '') {
    this.scheduleRefresh();
    window.addEventListener('storage', (e) => {
      // another tab logged in, refreshed or logged out
      if (e.key !== STORAGE_KEY) return;
      const s = loadSession();
      if (s?.user_id !== this.session?.user_id || s === null) this.setSession(s, false);
      else this.session = s;
    });
  }

  get current(): Session | null {
    return this.session;
  }

  onSession(fn: (s: Session | null) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private setSession(s: Session | null, persist = true): void {
    this.session = s;
    if (persist) saveSession(s);
    this.scheduleRefresh();
    for (const fn of this.listeners) fn(s);
  }

  private scheduleRefresh(): void {
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    const s = this.session;
    if (!s) return;
    const life = s.access_expires_at - Date.now();
    const delay = Math.max(1000, Math.min(life * 0.8, 2 ** 31 - 1));
    this.refreshTimer = setTimeout(() => {
      this.refresh().catch(() => undefined);
    }, delay);
  }

  private async raw(method: string, path: string, body?: unknown, token?: string): Promise<unknown> {
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers['Authorization'] = `Bearer ${token}`;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), REQUEST_TIMEOUT_MS);
    let res: Response;
    try {
      res = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? null : JSON.stringify(body),
        signal: ctl.signal,
        credentials: 'omit',
      });
    } catch (e) {
      const aborted = e instanceof DOMException && e.name === 'AbortError';
      throw new ApiError(0, aborted ? 'timeout' : 'network', aborted ? 'The server did not answer in time.' : 'Cannot reach the server.');
    } finally {
      clearTimeout(timer);
    }
    const text = await res.text();
    if (text.length > MAX_RESPONSE_CHARS) throw new ApiError(res.status, 'too_large', 'The answer was too large.');
    let json: unknown = null;
    if (text.length > 0) {
      try {
        json = JSON.parse(text);
      } catch {
        json = null;
      }
    }
    if (!res.ok) {
      const e = parseError(json);
      throw new ApiError(res.status, e?.code ?? `http_${res.status}`, e?.message ?? `${res.status} ${res.statusText}`);
    }
    return json;
  }

  /** An authenticated call: a fresh token first if the current one is about to expire, one retry after a 401. */
  private async call(method: string, path: string, body?: unknown): Promise<unknown> {
    const token = await this.accessToken();
    try {
      return await this.raw(method, path, body, token);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401) throw e;
      const s = await this.refresh();
      if (!s) throw e;
      return this.raw(method, path, body, s.access_token);
    }
  }

  /** A valid access token, refreshed first when it has less than 30 s left. */
  async accessToken(): Promise<string> {
    const s = this.session;
    if (!s) throw new ApiError(401, 'logged_out', 'You are logged out.');
    if (s.access_expires_at - Date.now() > 30000) return s.access_token;
    const n = await this.refresh();
    if (!n) throw new ApiError(401, 'logged_out', 'Your session has ended; log in again.');
    return n.access_token;
  }

  async register(username: string, password: string): Promise<void> {
    await this.raw('POST', '/auth/register', { username: username.trim(), password });
  }

  async login(username: string, password: string): Promise<Session> {
    const v = await this.raw('POST', '/auth/login', { username: username.trim(), password });
    const s = this.sessionFrom(v, username.trim());
    this.setSession(s);
    return s;
  }

  logout(): void {
    this.setSession(null);
  }

  private sessionFrom(v: unknown, username: string, fallback?: Session): Session {
    if (!isObj(v)) throw new ApiError(500, 'bad_response', 'The server sent an unexpected answer.');
    const access = v['access_token'];
    const refresh = v['refresh_token'];
    const expires = v['expires_in'];
    const user = v['user_id'] ?? fallback?.user_id;
    if (typeof access !== 'string' || typeof refresh !== 'string' || !validId(user)) {
      throw new ApiError(500, 'bad_response', 'The server sent an unexpected answer.');
    }
    const life = typeof expires === 'number' && expires > 0 ? expires : 900;
    return {
      user_id: user,
      username: typeof v['username'] === 'string' ? v['username'] : username,
      access_token: access,
      refresh_token: refresh,
      access_expires_at: Date.now() + life * 1000,
    };
  }

  /** Rotates the refresh token; resolves null (and logs out) when the server refuses it. */
  refresh(): Promise<Session | null> {
    if (this.refreshing) return this.refreshing;
    const run = async (): Promise<Session | null> => {
      const held = this.session;
      if (!held) return null;
      // Another tab may have rotated the pair already: use what it stored.
      const stored = loadSession();
      if (
        stored &&
        stored.user_id === held.user_id &&
        stored.refresh_token !== held.refresh_token &&
        stored.access_expires_at - Date.now() > 30000
      ) {
        this.setSession(stored, false);
        return stored;
      }
      const current = stored && stored.user_id === held.user_id ? stored : held;
      try {
        const v = await this.raw('POST', '/auth/refresh', { refresh_token: current.refresh_token });
        const s = this.sessionFrom(v, current.username, current);
        this.setSession(s);
        return s;
      } catch (e) {
        if (e instanceof ApiError && (e.status === 401 || e.status === 403 || e.status === 400)) {
          this.setSession(null);
          return null;
        }
        throw e;
      }
    };
    const locked: Promise<Session | null> =
      typeof navigator !== 'undefined' && navigator.locks
        ? navigator.locks.request('kchat.refresh', run).then((inner) => inner)
        : run();
    this.refreshing = locked.finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  async conversations(): Promise<Conversation[]> {
    const v = await this.call('GET', '/conversations');
    const list = isObj(v) && Array.isArray(v['conversations']) ? (v['conversations'] as unknown[]) : [];
    return list.map(parseConversation).filter((c): c is Conversation => c !== null);
  }

  async conversation(id: string): Promise<Conversation> {
    const v = await this.call('GET', `/conversations/${encodeURIComponent(id)}`);
    const c = parseConversation(isObj(v) && isObj(v['conversation']) ? v['conversation'] : v);
    if (!c) throw new ApiError(500, 'bad_response', 'The server sent an unexpected conversation.');
    return c;
  }

  /** A group, or (`direct`) the one conversation with members[0]: made once, the same one
   * every time it is asked for again, by either of the two. */
  async createConversation(title: string, members: string[], kind: 'group' | 'direct' = 'group'): Promise<Conversation> {
    const body = kind === 'direct' ? { kind, title, members } : { title, members };
    const v = await this.call('POST', '/conversations', body);
    const c = parseConversation(isObj(v) && isObj(v['conversation']) ? v['conversation'] : v);
    if (!c) throw new ApiError(500, 'bad_response', 'The server sent an unexpected conversation.');
    return c;
  }

  private conversationFrom(v: unknown): Conversation {
    const c = parseConversation(isObj(v) && isObj(v['conversation']) ? v['conversation'] : v);
    if (!c) throw new ApiError(500, 'bad_response', 'The server sent an unexpected conversation.');
    return c;
  }

  private convoPath(id: string, member?: string): string {
    const base = `/conversations/${encodeURIComponent(id)}`;
    return member === undefined ? base : `${base}/members/${encodeURIComponent(member)}`;
  }

  /** Renames a group or sets its topic ("" clears it): `PATCH /conversations/{id}`, a field
   * left out stays as it is. Owners and admins. */
  async updateConversation(id: string, change: { title?: string; topic?: string }): Promise<Conversation> {
    return this.conversationFrom(await this.call('PATCH', this.convoPath(id), change));
  }

  /** Adds people to a group (`POST /conversations/{id}/members`). Owners and admins. */
  async addMembers(id: string, members: string[]): Promise<Conversation> {
    return this.conversationFrom(await this.call('POST', `${this.convoPath(id)}/members`, { members }));
  }

  /** Removes a member (`DELETE /conversations/{id}/members/{user_id}`, 204); my own id: I leave. */
  async removeMember(id: string, userId: string): Promise<void> {
    await this.call('DELETE', this.convoPath(id, userId));
  }

  /** Gives a member a role (`PATCH /conversations/{id}/members/{user_id}`). */
  async setRole(id: string, userId: string, role: Role): Promise<Conversation> {
    return this.conversationFrom(await this.call('PATCH', this.convoPath(id, userId), { role }));
  }

  /** The user of an exact username (`GET /users?username=`); a clear error when there is none. */
  async lookupUser(username: string): Promise<string> {
    let v: unknown;
    try {
      v = await this.call('GET', `/users?username=${encodeURIComponent(username)}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        throw new ApiError(404, 'no_such_user', `No user named "${username}".`);
      }
      if (e instanceof ApiError && e.status === 400) {
        throw new ApiError(400, 'invalid_username', `"${username}" is not a valid username.`);
      }
      throw e;
    }
    // found by the name's key (case and width do not matter): the name as its owner spells it
    if (isObj(v) && validId(v['user_id']) && typeof v['username'] === 'string') return v['user_id'];
    throw new ApiError(500, 'bad_response', 'The server sent an unexpected user.');
  }

  /** People whose username or display name starts with prefix (`GET /users?prefix=`), for
   * the people picker: at most limit, none when the server throttles the lookups. */
  async findPeople(prefix: string, limit = 8): Promise<Person[]> {
    let v: unknown;
    try {
      v = await this.call('GET', `/users?prefix=${encodeURIComponent(prefix)}&limit=${limit}`);
    } catch (e) {
      if (e instanceof ApiError && (e.status === 429 || e.status === 400)) return [];
      throw e;
    }
    const list = isObj(v) && Array.isArray(v['users']) ? (v['users'] as unknown[]) : [];
    const out: Person[] = [];
    for (const u of list) {
      if (!isObj(u) || !validId(u['user_id']) || typeof u['username'] !== 'string') continue;
      const display_name = typeof u['display_name'] === 'string' ? u['display_name'] : '';
      out.push({ user_id: u['user_id'], username: u['username'], display_name });
    }
    return out;
  }

  /** Sets the caller's display name (`PATCH /users/me`; "" clears it): the name as stored. */
  async setDisplayName(display_name: string): Promise<string> {
    const v = await this.call('PATCH', '/users/me', { display_name });
    if (isObj(v) && typeof v['display_name'] === 'string') return v['display_name'];
    throw new ApiError(500, 'bad_response', 'The server sent an unexpected user.');
  }

  /** The caller's display name (`GET /users/me`). */
  async myDisplayName(): Promise<string> {
    const v = await this.call('GET', '/users/me');
    return isObj(v) && typeof v['display_name'] === 'string' ? v['display_name'] : '';
  }

  /** The username of a user id (`GET /users/{id}`), or null when there is no such user. */
  async userName(userId: string): Promise<string | null> {
    let v: unknown;
    try {
      v = await this.call('GET', `/users/${encodeURIComponent(userId)}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return null;
      throw e;
    }
    if (isObj(v) && v['user_id'] === userId && typeof v['username'] === 'string') return v['username'];
    throw new ApiError(500, 'bad_response', 'The server sent an unexpected user.');
  }

  async messages(
    convoId: string,
    q: { limit?: number; before_seq?: number; since_seq?: number; around_seq?: number },
  ): Promise<MessagePage> {
    const params = new URLSearchParams();
    if (q.limit !== undefined) params.set('limit', String(q.limit));
    if (q.before_seq !== undefined) params.set('before_seq', String(q.before_seq));
    if (q.since_seq !== undefined) params.set('since_seq', String(q.since_seq));
    if (q.around_seq !== undefined) params.set('around_seq', String(q.around_seq));
    const v = await this.call('GET', `/conversations/${encodeURIComponent(convoId)}/messages?${params}`);
    const list = isObj(v) && Array.isArray(v['messages']) ? (v['messages'] as unknown[]) : [];
    const messages = list
      .map(parseMessage)
      .filter((m): m is Message => m !== null && m.convo_id === convoId);
    const page: MessagePage = { messages, next_cursor: isObj(v) ? cursorOf(v['next_cursor']) : null };
    if (isObj(v) && 'prev_cursor' in v) page.prev_cursor = cursorOf(v['prev_cursor']);
    return page;
  }

  /** One page of search results (`GET /search?q=&cursor=`), ranked by the server; `next_cursor`
   * (opaque) asks for the next page of the same q, null after the last. */
  async search(q: string, cursor?: string | null, limit?: number): Promise<SearchPage> {
    const params = new URLSearchParams({ q });
    if (cursor) params.set('cursor', cursor);
    if (limit !== undefined) params.set('limit', String(limit));
    const v = await this.call('GET', `/search?${params}`);
    const list = isObj(v)
      ? ((Array.isArray(v['results']) ? v['results'] : Array.isArray(v['messages']) ? v['messages'] : []) as unknown[])
      : [];
    const hits: SearchHit[] = [];
    for (const r of list) {
      const raw = isObj(r) && isObj(r['message']) ? r['message'] : r;
      const message = parseMessage(raw);
      if (!message) continue;
      const headline = isObj(raw) && typeof raw['headline'] === 'string' ? raw['headline'] : null;
      hits.push({ message, headline });
    }
    const next = isObj(v) ? v['next_cursor'] : null;
    return { hits, next_cursor: typeof next === 'string' && next.length > 0 ? next : null };
  }

  /** Starts an upload: an attachment id and a presigned PUT URL (`POST /attachments/presign`). */
  async presign(convoId: string, filename: string, contentType: string, size: number): Promise<Presigned> {
    const v = await this.call('POST', '/attachments/presign', { convo_id: convoId, filename, content_type: contentType, size });
    if (!isObj(v) || !validId(v['id']) || typeof v['url'] !== 'string' || !isObj(v['headers'])) {
      throw new ApiError(500, 'bad_response', 'The server sent an unexpected answer.');
    }
    const headers: Record<string, string> = {};
    for (const [k, h] of Object.entries(v['headers'])) if (typeof h === 'string') headers[k] = h;
    const max = v['max_bytes'];
    return {
      id: v['id'],
      method: typeof v['method'] === 'string' ? v['method'] : 'PUT',
      url: v['url'],
      headers,
      key: typeof v['key'] === 'string' ? v['key'] : '',
      max_bytes: typeof max === 'number' && Number.isSafeInteger(max) && max > 0 ? max : null,
    };
  }

  /** Says an upload is in the object store (`POST /attachments/{id}/complete`): the
   * attachment as the server checked it. */
  async completeAttachment(id: string): Promise<Attachment> {
    const a = parseAttachment(await this.call('POST', `/attachments/${encodeURIComponent(id)}/complete`));
    if (!a) throw new ApiError(500, 'bad_response', 'The server sent an unexpected attachment.');
    return a;
  }

  /** Download URLs of an attachment of a conversation (members only; 404 for anyone else). */
  async attachmentLinks(convoId: string, attId: string): Promise<AttachmentLinks> {
    const v = await this.call('GET', `${this.convoPath(convoId)}/attachments/${encodeURIComponent(attId)}`);
    const expires = isObj(v) ? toMillis(v['expires_at']) : null;
    if (!isObj(v) || typeof v['url'] !== 'string' || expires === null) {
      throw new ApiError(500, 'bad_response', 'The server sent an unexpected answer.');
    }
    const thumb = v['thumb_url'];
    return { url: v['url'], thumb_url: typeof thumb === 'string' && thumb ? thumb : null, expires_at: expires, attachment: parseAttachment(v['attachment']) };
  }

  /** The server's VAPID public key for Web Push (`GET /push/vapid-public-key`), or null when
   * it has none: 503 `push_unavailable` when push is not set up, 404 from a server without
   * it, or an answer that is not the key. */
  async pushPublicKey(): Promise<string | null> {
    let v: unknown;
    try {
      v = await this.call('GET', '/push/vapid-public-key');
    } catch (e) {
      if (e instanceof ApiError && (e.status === 503 || e.status === 404 || e.status === 501)) return null;
      throw e;
    }
    const key = isObj(v) ? v['public_key'] : null;
    return typeof key === 'string' && key.length > 0 ? key : null;
  }

  /** Hands a push subscription to the server (`POST /push/subscriptions`): its id there, the
   * same one again for an endpoint it knows. */
  async addPushSubscription(body: { endpoint: string; keys: { p256dh: string; auth: string } }): Promise<string> {
    const v = await this.call('POST', '/push/subscriptions', body);
    const id = isObj(v) ? v['id'] : null;
    if (typeof id === 'string' && id.length > 0) return id;
    if (typeof id === 'number' && Number.isSafeInteger(id)) return String(id);
    throw new ApiError(500, 'bad_response', 'The server sent an unexpected answer.');
  }

  /** Has the server forget a push subscription (`DELETE /push/subscriptions/{id}`; one it
   * does not know is gone already). With `token`, under that access token: a logout clears
   * the session before the request goes. */
  async deletePushSubscription(id: string, token?: string): Promise<void> {
    const path = `/push/subscriptions/${encodeURIComponent(id)}`;
    try {
      if (token !== undefined) await this.raw('DELETE', path, undefined, token);
      else await this.call('DELETE', path);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return;
      throw e;
    }
  }

  /** Mutes a conversation for me (`PUT /conversations/{id}/mute`), for `forS` seconds or (null)
   * until I unmute it. */
  async mute(id: string, forS: number | null): Promise<{ muted: boolean; muted_until: number | null }> {
    return this.muteFrom(await this.call('PUT', `${this.convoPath(id)}/mute`, { for_s: forS }));
  }

  /** Unmutes a conversation (`DELETE /conversations/{id}/mute`). */
  async unmute(id: string): Promise<{ muted: boolean; muted_until: number | null }> {
    return this.muteFrom(await this.call('DELETE', `${this.convoPath(id)}/mute`));
  }

  private muteFrom(v: unknown): { muted: boolean; muted_until: number | null } {
    const m = parseMute(v);
    if (!m) throw new ApiError(500, 'bad_response', 'The server sent an unexpected answer.');
    return m;
  }
}
