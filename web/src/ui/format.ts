import type { Conversation } from '../protocol';

export function shortId(id: string): string {
  return id.length > 10 ? `${id.slice(0, 8)}…` : id;
}

export function nameOf(names: Readonly<Record<string, string>>, id: string): string {
  return names[id] ?? shortId(id);
}

/** A conversation's title, or the other members' names when it has none. */
export function titleOf(c: Conversation, names: Readonly<Record<string, string>>, me: string): string {
  if (c.title.trim()) return c.title;
  const others = c.members.filter((m) => m.user_id !== me).map((m) => m.username ?? nameOf(names, m.user_id));
  return others.length ? others.join(', ') : 'Just you';
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

export function timeOf(ms: number): string {
  if (!ms) return '';
  const d = new Date(ms);
  const today = new Date();
  return d.toDateString() === today.toDateString() ? timeFmt.format(d) : dayFmt.format(d);
}

export function fullTimeOf(ms: number): string {
  return ms ? fullFmt.format(new Date(ms)) : '';
}

export function lastSeenText(ms: number | null): string {
  if (!ms) return 'offline';
  const mins = Math.round((Date.now() - ms) / 60000);
  if (mins < 1) return 'last seen just now';
  if (mins < 60) return `last seen ${mins} min ago`;
  return `last seen ${fullTimeOf(ms)}`;
}

/** The start of a message for a quote: whitespace folded to single spaces, at most `max`
 * characters (whole code points), with an ellipsis when cut. */
export function snippetOf(text: string, max = 100): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  const chars = Array.from(flat);
  return chars.length <= max ? flat : `${chars.slice(0, max).join('').trimEnd()}…`;
}
