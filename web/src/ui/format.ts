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

/** How long a muted conversation stays muted: "Muted" (until unmuted), "Muted until 14:05"
 * (today), or with the date. */
export function muteText(until: number | null, now = Date.now()): string {
  if (until === null) return 'Muted';
  const d = new Date(until);
  const same = d.toDateString() === new Date(now).toDateString();
  return `Muted until ${same ? timeFmt.format(d) : fullFmt.format(d)}`;
}

const UNITS = ['KB', 'MB', 'GB', 'TB'];

/** A size in bytes for people: "512 bytes", "1 byte", "1.5 KB", "12 KB", "3.4 MB" (units of
 * 1024; one decimal below 10, none above; never "1024 KB"). */
export function sizeOf(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '';
  if (bytes < 1024) return bytes === 1 ? '1 byte' : `${Math.round(bytes)} bytes`;
  let v = bytes / 1024;
  let i = 0;
  for (;;) {
    const shown = v < 10 ? Math.round(v * 10) / 10 : Math.round(v);
    if (shown < 1024 || i === UNITS.length - 1) return `${shown} ${UNITS[i]}`;
    v /= 1024;
    i++;
  }
}

/** The start of a message for a quote: whitespace folded to single spaces, at most `max`
 * characters (whole code points), with an ellipsis when cut. */
export function snippetOf(text: string, max = 100): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  const chars = Array.from(flat);
  return chars.length <= max ? flat : `${chars.slice(0, max).join('').trimEnd()}…`;
}

// ---- days and groups in a conversation ---------------------------------------------------

const partsFmts = new Map<string, Intl.DateTimeFormat>();

/** The calendar day of `ms` in `timeZone` (the viewer's when absent), as a day number (days
 * since 1970-01-01 of that calendar): equal for two times of one day, one apart for
 * consecutive days, whatever the zone's offsets and daylight saving. */
export function dayNumberOf(ms: number, timeZone?: string): number {
  if (timeZone === undefined) {
    // the viewer's zone: what Date says, without a formatter
    const t = new Date(ms);
    return Math.round(Date.UTC(t.getFullYear(), t.getMonth(), t.getDate()) / 86_400_000);
  }
  const key = timeZone ?? '';
  let fmt = partsFmts.get(key);
  if (!fmt) {
    fmt = new Intl.DateTimeFormat('en-US', { timeZone, year: 'numeric', month: 'numeric', day: 'numeric' });
    partsFmts.set(key, fmt);
  }
  let y = 0;
  let mo = 0;
  let d = 0;
  for (const p of fmt.formatToParts(ms)) {
    if (p.type === 'year') y = Number(p.value);
    else if (p.type === 'month') mo = Number(p.value);
    else if (p.type === 'day') d = Number(p.value);
  }
  return Math.round(Date.UTC(y, mo - 1, d) / 86_400_000);
}

const labelFmts = new Map<string, Intl.DateTimeFormat>();

function labelFmt(locale: string | undefined, timeZone: string | undefined, withYear: boolean): Intl.DateTimeFormat {
  const key = `${locale ?? ''}\n${timeZone ?? ''}\n${withYear}`;
  let fmt = labelFmts.get(key);
  if (!fmt) {
    fmt = new Intl.DateTimeFormat(locale, {
      timeZone,
      weekday: 'long',
      day: 'numeric',
      month: 'long',
      ...(withYear ? { year: 'numeric' } : {}),
    });
    labelFmts.set(key, fmt);
  }
  return fmt;
}

/** What the separator above the first message of a day says: "Today", "Yesterday", or the
 * date in the viewer's locale and time zone (with the year when it is not this year's). */
export function dayLabelOf(ms: number, now: number, opts: { locale?: string; timeZone?: string } = {}): string {
  const day = dayNumberOf(ms, opts.timeZone);
  const today = dayNumberOf(now, opts.timeZone);
  if (day === today) return 'Today';
  if (day === today - 1) return 'Yesterday';
  const year = (n: number) => new Date(n * 86_400_000).getUTCFullYear();
  return labelFmt(opts.locale, opts.timeZone, year(day) !== year(today)).format(ms);
}

/** Consecutive messages of one sender at most this far apart show the sender once. */
export const GROUP_GAP_MS = 5 * 60_000;

/** What grouping looks at in a message. */
export interface Groupable {
  sender_id: string;
  created_at: number;
}

/**
 * Where the separators and groups of a run of messages are, in order: for each message,
 * `day` is the label of a date separator above it (null when it is of the same day as the one
 * before), and `continues` is true when it is the same sender's as the one before, within
 * GROUP_GAP_MS, on the same day and with no break (`breakBefore`) between.
 */
export function layoutOf<T extends Groupable>(
  messages: readonly T[],
  now: number,
  opts: { locale?: string; timeZone?: string; breakBefore?: (m: T) => boolean } = {},
): { day: string | null; continues: boolean }[] {
  const out: { day: string | null; continues: boolean }[] = [];
  let prev: T | null = null;
  let prevDay: number | null = null;
  for (const m of messages) {
    // a message without a time (0) belongs to the day of the one before
    const dayNo: number | null = m.created_at ? dayNumberOf(m.created_at, opts.timeZone) : prevDay;
    const newDay = dayNo !== null && dayNo !== prevDay;
    const day = newDay ? dayLabelOf(m.created_at, now, opts) : null;
    const continues =
      prev !== null &&
      !newDay &&
      prev.sender_id === m.sender_id &&
      Math.abs(m.created_at - prev.created_at) <= GROUP_GAP_MS &&
      !(opts.breakBefore?.(m) ?? false);
    out.push({ day, continues });
    prev = m;
    if (dayNo !== null) prevDay = dayNo;
  }
  return out;
}
