// Links in message text: a tokenizer that splits a message into plain text and http, https
// and mailto links. Nothing else in a message becomes markup; the view builds React elements
// from these tokens (never HTML), so a message is shown as the text it is.
//
// The work is linear in the length of the message: one scan for the scheme prefixes (a
// regular expression without nested quantifiers), one sticky scan for each link's extent and
// a trim of its trailing punctuation that counts brackets once.

export interface TextToken {
  kind: 'text';
  text: string;
}

export interface LinkToken {
  kind: 'link';
  /** exactly as it is in the message */
  text: string;
  /** what the link opens */
  href: string;
  scheme: 'http' | 'https' | 'mailto';
}

export type Token = TextToken | LinkToken;

/** Where a link may start: the only schemes that become links. */
const START = /https?:\/\/|mailto:/gi;

/** A link's extent: everything up to white space, a control character, a character that
 * never stands unencoded in a link (< > " `) or a full-width punctuation mark. */
const BODY = /[^\s\u0000-\u001f\u007f-\u009f<>"`\u3001\u3002\uff01\uff08\uff09\uff0c\uff1a\uff1b\uff1f\u300a\u300b\u300c\u300d\u300e\u300f\u3010\u3011]{0,4097}/y;

/** A longer run is not taken for a link: it bounds the work per scheme prefix, so a message
 * of many prefixes that are no links costs at most its length times this. */
export const MAX_LINK = 4096;

/** Punctuation that ends a sentence rather than a link when it is a link's last character. */
const TRAILING = new Set(['.', ',', ':', ';', '!', '?', "'", '"', '*', '_', '~']);

/** The closing brackets kept at the end of a link only when the link opened them. */
const PAIRS: Record<string, string> = { ')': '(', ']': '[', '}': '{' };

/** A character before the scheme that makes it part of something else ("xhttp://", "a.http://"). */
const GLUED = /[A-Za-z0-9+.\-_:/@&=%#]/;

/** The first character of a host: a letter or digit (of any script), or "[" for IPv6. */
const HOST_START = /[\p{L}\p{N}[]/u;

const MAILTO = /^mailto:[^\s@<>()[\]"',;:]+@[^\s@<>()[\]"',;:]+$/i;

/**
 * Splits `text` into plain text and links. Joining the tokens' text gives back `text`
 * exactly. Only http, https and mailto links are found; a link does not take the
 * punctuation that follows it (". , ) ! ? : ;"), but keeps closing brackets it opened
 * ("https://en.wikipedia.org/wiki/Pine_(disambiguation)").
 */
export function linkify(text: string): Token[] {
  const tokens: Token[] = [];
  let done = 0; // text before this index is in tokens
  START.lastIndex = 0;
  for (let m = START.exec(text); m !== null; m = START.exec(text)) {
    const start = m.index;
    const scheme = m[0].toLowerCase();
    const prev = start > 0 ? text[start - 1]! : '';
    if (prev && GLUED.test(prev)) continue;
    if (scheme !== 'mailto:' && !hostStarts(text, start + scheme.length)) continue;
    BODY.lastIndex = start + m[0].length;
    const body = BODY.exec(text);
    let end = start + m[0].length + (body ? body[0].length : 0);
    if (end - start > MAX_LINK) continue;
    end = trimTrailing(text, start + m[0].length, end);
    const candidate = text.slice(start, end);
    const link = toLink(candidate, scheme);
    if (!link) continue;
    if (start > done) tokens.push({ kind: 'text', text: text.slice(done, start) });
    tokens.push(link);
    done = end;
    START.lastIndex = end;
  }
  if (done < text.length) tokens.push({ kind: 'text', text: text.slice(done) });
  return tokens;
}

/** The end of a link spanning text[from, end) once trailing punctuation and unopened closing
 * brackets are left out. */
function trimTrailing(text: string, from: number, end: number): number {
  // brackets opened and closed inside the link, counted once
  const opened: Record<string, number> = { '(': 0, '[': 0, '{': 0 };
  const closed: Record<string, number> = { ')': 0, ']': 0, '}': 0 };
  for (let i = from; i < end; i++) {
    const c = text[i]!;
    if (c in opened) opened[c]!++;
    else if (c in closed) closed[c]!++;
  }
  while (end > from) {
    const c = text[end - 1]!;
    if (TRAILING.has(c)) {
      end--;
    } else if (c in PAIRS && closed[c]! > opened[PAIRS[c]!]!) {
      closed[c]!--;
      end--;
    } else {
      break;
    }
  }
  return end;
}

/** Whether a host can start at text[i]. */
function hostStarts(text: string, i: number): boolean {
  const c = text.codePointAt(i);
  return c !== undefined && HOST_START.test(String.fromCodePoint(c));
}

function toLink(candidate: string, scheme: string): LinkToken | null {
  if (scheme === 'mailto:') {
    return MAILTO.test(candidate) ? { kind: 'link', text: candidate, href: candidate, scheme: 'mailto' } : null;
  }
  let url: URL;
  try {
    url = new URL(candidate);
  } catch {
    return null;
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname) return null;
  return { kind: 'link', text: candidate, href: url.href, scheme: url.protocol === 'https:' ? 'https' : 'http' };
}
