// What tells a user about new messages while they look elsewhere: the unread count in the
// tab's title and as a badge on its favicon, and desktop notifications while the tab is
// hidden. Muted conversations count for neither. The pure parts are here (and unit-tested);
// ui/useAttention.ts puts them on the page.

import { isMuted, type Conversation, type Message } from './protocol';
import { snippetOf } from './ui/format';

export const APP_NAME = 'kchat';

/** The favicon when nothing is unread: none (the browser's blank). */
export const PLAIN_FAVICON = 'data:,';

/** The unread messages of the conversations that are not muted. */
export function unreadTotal(conversations: readonly Conversation[], now = Date.now()): number {
  let n = 0;
  for (const c of conversations) if (c.unread > 0 && !isMuted(c, now)) n += c.unread;
  return n;
}

/** The count as a badge shows it: at most "99+". */
export function badgeText(n: number): string {
  return n > 99 ? '99+' : String(n);
}

/** The tab's title: "(3) kchat" with 3 unread, "kchat" with none. */
export function titleText(unread: number, name = APP_NAME): string {
  return unread > 0 ? `(${badgeText(unread)}) ${name}` : name;
}

/** The favicon: a round badge with the count (an SVG data: URL), or the plain one at 0. */
export function faviconHref(unread: number): string {
  if (unread <= 0) return PLAIN_FAVICON;
  const text = badgeText(unread);
  const size = text.length >= 3 ? 13 : text.length === 2 ? 17 : 21;
  const svg =
    '<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32" viewBox="0 0 32 32">' +
    '<circle cx="16" cy="16" r="15" fill="#c62828"/>' +
    `<text x="16" y="16" dy="0.35em" text-anchor="middle" font-family="Arial,Helvetica,sans-serif" font-size="${size}" font-weight="700" fill="#ffffff">${text}</text>` +
    '</svg>';
  return `data:image/svg+xml,${encodeURIComponent(svg)}`;
}

/** Whether a message that just arrived raises a desktop notification: someone else's, new,
 * not deleted, in a conversation that is not muted, while the tab is hidden and
 * notifications are on. */
export function shouldNotify(o: {
  message: Message;
  me: string;
  conversation: Conversation | undefined;
  hidden: boolean;
  enabled: boolean;
  now?: number;
}): boolean {
  if (!o.enabled || !o.hidden) return false;
  if (o.message.sender_id === o.me || o.message.deleted) return false;
  return !(o.conversation && isMuted(o.conversation, o.now ?? Date.now()));
}

/** A notification's title and body: who wrote (and where, in a group), and the start of
 * what they wrote. */
export function notificationText(sender: string, conversationTitle: string | null, direct: boolean, content: string): { title: string; body: string } {
  const title = direct || !conversationTitle ? sender : `${sender} in ${conversationTitle}`;
  return { title, body: snippetOf(content, 120) };
}

const PREF_KEY = 'kchat.notifications';

/** Whether the user turned desktop notifications off here (they are on once the browser
 * allows them, until turned off). */
export function notificationsWanted(): boolean {
  try {
    return localStorage.getItem(PREF_KEY) !== 'off';
  } catch {
    return true;
  }
}

export function setNotificationsWanted(on: boolean): void {
  try {
    if (on) localStorage.removeItem(PREF_KEY);
    else localStorage.setItem(PREF_KEY, 'off');
  } catch {
    // storage disabled: for this page only
  }
}

/** The mute lengths the conversation header offers, in seconds (null: until unmuted). */
export const MUTE_CHOICES: readonly { label: string; forS: number | null }[] = [
  { label: 'For 1 hour', forS: 3600 },
  { label: 'For 8 hours', forS: 8 * 3600 },
  { label: 'For 1 week', forS: 7 * 86400 },
  { label: 'Until I unmute it', forS: null },
];
