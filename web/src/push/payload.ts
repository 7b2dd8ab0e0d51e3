// Web Push messages, as the service worker (src/sw/sw.ts) shows them. kchat-notifier sends a
// member who is not connected an RFC 8030 push whose decrypted payload is JSON:
//
//   {"type":"message","convo_id":"g_…","title":"Design","body":"3 new messages from ann",
//    "count":3,"first_seq":5,"last_seq":7,"sender_id":"u_…","sender":"ann","mention":false,
//    "url":"/c/g_…/m/5","tag":"convo:g_…"}
//
// Fields this client does not know are ignored; a payload that is not that JSON (empty,
// not JSON, another shape) still shows a notification, a generic one ("New messages"),
// because a push the user cannot see is what browsers penalise. Everything here is pure
// (no DOM, no worker globals), so the page, the worker and the unit tests share it.

import { isObj, validId } from '../protocol';
import { parseRoute, routePath } from '../route';

export const APP_TITLE = 'kchat';
export const GENERIC_BODY = 'New messages';
/** The tag of a notification that names no conversation. */
export const GENERIC_TAG = 'kchat';
const MAX_TITLE = 120;
const MAX_BODY = 240;
const MAX_TAG = 160;
const PLACEHOLDER_ORIGIN = 'https://kchat.invalid';

/** A push of new messages, as far as this client reads it. */
export interface PushMessage {
  type: string;
  convo_id: string | null;
  title: string | null;
  body: string | null;
  count: number | null;
  first_seq: number | null;
  last_seq: number | null;
  sender_id: string | null;
  sender: string | null;
  mention: boolean;
  url: string | null;
  tag: string | null;
}

/** What the worker hands to `registration.showNotification(title, options)`. */
export interface NotificationSpec {
  title: string;
  options: {
    body: string;
    tag: string;
    /** every new push of the same conversation is announced again, replacing the last one */
    renotify: true;
    data: NotificationData;
  };
}

/** What a shown notification carries for its click. */
export interface NotificationData {
  /** a path of this client: /c/<convo id>, /c/<convo id>/m/<seq>, or / */
  url: string;
  convo_id: string | null;
}

/** The tag of a conversation's notifications (the server's, and the page's own): one per
 * conversation at a time. */
export function conversationTag(convoId: string): string {
  return `convo:${convoId}`;
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

function seq(v: unknown): number | null {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 1 ? v : null;
}

/** One line, at most max characters (an ellipsis when cut), no control characters. */
export function clip(s: string, max: number): string {
  // eslint-disable-next-line no-control-regex
  const flat = s.replace(/[\u0000-\u001f\u007f]+/g, ' ').replace(/\s+/g, ' ').trim();
  return flat.length <= max ? flat : `${flat.slice(0, max - 1).trimEnd()}…`;
}

/**
 * The push's payload (its decrypted text) read as a message push, or null when it is not
 * JSON of an object. A field of the wrong type is taken as absent; unknown fields are
 * ignored.
 */
export function parsePushPayload(text: string | null | undefined): PushMessage | null {
  if (typeof text !== 'string' || text.length === 0 || text.length > 8192) return null;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObj(v)) return null;
  const convo = v['convo_id'];
  const count = v['count'];
  return {
    type: str(v['type']) ?? '',
    convo_id: validId(convo) ? convo : null,
    title: str(v['title']),
    body: str(v['body']),
    count: typeof count === 'number' && Number.isSafeInteger(count) && count >= 1 ? count : null,
    first_seq: seq(v['first_seq']),
    last_seq: seq(v['last_seq']),
    sender_id: validId(v['sender_id']) ? (v['sender_id'] as string) : null,
    sender: str(v['sender']),
    mention: v['mention'] === true,
    url: str(v['url']),
    tag: str(v['tag']),
  };
}

/**
 * Where a click on the notification goes, always a path of this client: the push's `url`
 * when it is one of the client's addresses (a conversation, or a message of it), else the
 * conversation (at first_seq when known), else the list. Nothing from the payload can send
 * the click to another origin.
 */
export function clickPath(m: PushMessage | null): string {
  if (!m) return '/';
  if (m.url !== null && m.url.startsWith('/')) {
    // read against a placeholder origin: "//host/…", "/\\host" and the like leave it, and are
    // not taken
    let u: URL | null = null;
    try {
      u = new URL(m.url, PLACEHOLDER_ORIGIN);
    } catch {
      u = null;
    }
    const r = u && u.origin === PLACEHOLDER_ORIGIN ? parseRoute(u.pathname, u.search) : null;
    if (r?.kind === 'convo' && (m.convo_id === null || r.id === m.convo_id)) return routePath(r);
  }
  if (m.convo_id === null) return '/';
  return m.first_seq !== null ? routePath({ kind: 'convo', id: m.convo_id, seq: m.first_seq }) : routePath({ kind: 'convo', id: m.convo_id });
}

/** The notification a push shows: the server's title and body, or as near as the payload
 * allows, or the generic one. */
export function notificationFor(m: PushMessage | null): NotificationSpec {
  const title = clip(m?.title ?? '', MAX_TITLE) || clip(m?.sender ?? '', MAX_TITLE) || APP_TITLE;
  let body = clip(m?.body ?? '', MAX_BODY);
  if (!body && m) {
    const n = m.count ?? 0;
    const from = m.sender ? clip(m.sender, 64) : '';
    body = n > 1 ? `${n} new messages${from ? ` from ${from}` : ''}` : from && n === 1 ? `New message from ${from}` : '';
  }
  if (!body) body = GENERIC_BODY;
  const tag =
    m?.tag && m.tag.length <= MAX_TAG && !/[\u0000-\u001f]/.test(m.tag) // eslint-disable-line no-control-regex
      ? m.tag
      : m?.convo_id
        ? conversationTag(m.convo_id)
        : GENERIC_TAG;
  return {
    title,
    options: { body, tag, renotify: true, data: { url: clickPath(m), convo_id: m?.convo_id ?? null } },
  };
}

/** A push's text to its notification, in one step (what the worker's push handler does). */
export function notificationForPayload(text: string | null | undefined): NotificationSpec {
  return notificationFor(parsePushPayload(text));
}

/** A window of this origin, as the worker sees it (a WindowClient's fields). */
export interface WindowInfo {
  focused: boolean;
  visibilityState: string;
}

/** What a window of the client says it shows (its answer to WHERE_MESSAGE). The worker
 * asks rather than reading WindowClient.url: Chromium keeps there the address the page was
 * loaded at, not the one it moved to since (history.pushState). */
export interface WindowView {
  convo_id: string | null;
  visible: boolean;
  focused: boolean;
}

/** A window's answer to WHERE_MESSAGE, or null when it is not one. */
export function parseHere(v: unknown): WindowView | null {
  if (!isObj(v) || v['type'] !== HERE_MESSAGE) return null;
  return { convo_id: validId(v['convo_id']) ? (v['convo_id'] as string) : null, visible: v['visible'] === true, focused: v['focused'] === true };
}

/**
 * Whether a push need not be shown: a window of this client is visible, has the focus and
 * shows that very conversation, so the user sees its messages already. The server pushes
 * only to members who are not connected, so this is the rare race of a window that just
 * (re)connected. A push without a conversation is always shown.
 */
export function seenAlready(m: PushMessage | null, views: readonly WindowView[]): boolean {
  if (!m?.convo_id) return false;
  return views.some((w) => w.focused && w.visible && w.convo_id === m.convo_id);
}

/** The window a click brings forward: the focused one, else a visible one, else the first;
 * null when there is none (then a new one opens). */
export function pickWindow<T extends WindowInfo>(windows: readonly T[]): T | null {
  return windows.find((w) => w.focused) ?? windows.find((w) => w.visibilityState === 'visible') ?? windows[0] ?? null;
}

/** The data of a shown notification (Notification.data), checked: a click goes to a path of
 * this client only. */
export function notificationData(v: unknown): NotificationData {
  if (!isObj(v)) return { url: '/', convo_id: null };
  const convo = validId(v['convo_id']) ? (v['convo_id'] as string) : null;
  const url = typeof v['url'] === 'string' ? v['url'] : null;
  return { url: clickPath({ ...EMPTY, convo_id: convo, url }), convo_id: convo };
}

const EMPTY: PushMessage = {
  type: '',
  convo_id: null,
  title: null,
  body: null,
  count: null,
  first_seq: null,
  last_seq: null,
  sender_id: null,
  sender: null,
  mention: false,
  url: null,
  tag: null,
};

/** What the worker posts to a window to open a notification's place in it (the page moves
 * there as a link of its own would, without a reload), and the page's answer. */
export const OPEN_MESSAGE = 'kchat.open';
export const OPENED_MESSAGE = 'kchat.opened';
/** What the worker asks a focused window before showing a push (which conversation it
 * shows), and the page's answer: {type: HERE_MESSAGE, convo_id, visible, focused}. */
export const WHERE_MESSAGE = 'kchat.where';
export const HERE_MESSAGE = 'kchat.here';
/** What the worker posts to the windows after it subscribed again (pushsubscriptionchange):
 * a page hands the new subscription to the server, which the worker cannot (no token). */
export const RESUBSCRIBED_MESSAGE = 'kchat.resubscribed';

export interface OpenMessage {
  type: typeof OPEN_MESSAGE;
  url: string;
}

/** A message the worker posted to the page, if it is an OPEN_MESSAGE with a path of this
 * client. */
export function parseOpenMessage(v: unknown): OpenMessage | null {
  if (!isObj(v) || v['type'] !== OPEN_MESSAGE || typeof v['url'] !== 'string') return null;
  return { type: OPEN_MESSAGE, url: notificationData({ url: v['url'] }).url };
}
