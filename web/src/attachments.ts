// Attachments on the client: the rules of the composer's uploads (which files are taken, when
// a message can go), the words for an upload's failure, and the cache of short-lived download
// URLs. Pure, or with its clock and network injected, so that it is tested without a browser.
// The upload itself (presign, PUT with progress, complete) is upload.ts.

import type { AttachmentLinks } from './api';
import { MAX_ATTACHMENTS, type Attachment } from './protocol';
import { sizeOf } from './ui/format';

/** What a file being attached is doing: asking for its URL, being sent to the object store
 * (with progress), being checked by the server, or ready to go with the message. A failed or
 * cancelled upload leaves the composer. */
export type UploadPhase = 'presigning' | 'uploading' | 'completing' | 'done';

export interface Upload {
  /** this upload in the composer (not the attachment id, which comes with the presign) */
  key: string;
  name: string;
  size: number;
  content_type: string;
  phase: UploadPhase;
  /** bytes sent so far */
  loaded: number;
  /** the attachment as the server checked it, once done */
  attachment?: Attachment;
}

/** What the composer is asked to attach. */
export interface FileLike {
  name: string;
  size: number;
  type: string;
}

/** Media types by file name, for files the browser gives no type (type ''). */
const TYPES_BY_EXTENSION: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  pdf: 'application/pdf',
  txt: 'text/plain',
  csv: 'text/csv',
  zip: 'application/zip',
  html: 'text/html',
  htm: 'text/html',
};

/** The media type to presign a file with: the browser's, without parameters; else one from
 * its extension; else application/octet-stream. */
export function contentTypeOf(f: FileLike): string {
  const t = f.type.split(';')[0]?.trim().toLowerCase() ?? '';
  if (/^[a-z0-9][a-z0-9.+-]*\/[a-z0-9][a-z0-9.+-]*$/.test(t)) return t;
  const ext = /\.([A-Za-z0-9]+)$/.exec(f.name)?.[1]?.toLowerCase() ?? '';
  return TYPES_BY_EXTENSION[ext] ?? 'application/octet-stream';
}

const MAX_NAME_BYTES = 255;

/** A file name the server takes: no '/', '\' or control characters, at most 255 bytes of
 * UTF-8 (cut at a code point, the extension kept when it can be), never empty. */
export function safeFileName(name: string): string {
  let n = name.replace(/[/\\\u0000-\u001f\u007f-\u009f]/g, '_').trim();
  if (n === '' || n === '.' || n === '..') n = 'file';
  const enc = new TextEncoder();
  if (enc.encode(n).length <= MAX_NAME_BYTES) return n;
  const ext = /\.[A-Za-z0-9]{1,10}$/.exec(n)?.[0] ?? '';
  const stem = Array.from(n.slice(0, n.length - ext.length));
  while (stem.length > 0 && enc.encode(stem.join('') + ext).length > MAX_NAME_BYTES) stem.pop();
  return stem.join('') + ext;
}

/**
 * Which of `files` the composer takes, given the uploads it holds: at most MAX_ATTACHMENTS in
 * all, none empty, none larger than `maxBytes` (the server's limit, when known). `refused`
 * says in words why each other file was not taken.
 */
export function admitFiles<F extends FileLike>(current: readonly Upload[], files: readonly F[], maxBytes: number | null): { admitted: F[]; refused: string[] } {
  const admitted: F[] = [];
  const refused: string[] = [];
  let room = MAX_ATTACHMENTS - current.length;
  for (const f of files) {
    if (f.size <= 0) refused.push(`“${f.name}” is empty.`);
    else if (maxBytes !== null && f.size > maxBytes) refused.push(`“${f.name}” is too large: files are at most ${sizeOf(maxBytes)}.`);
    else if (room <= 0) refused.push(`“${f.name}” was not added: a message carries at most ${MAX_ATTACHMENTS} files.`);
    else {
      admitted.push(f);
      room--;
    }
  }
  return { admitted, refused };
}

/** Whether the composer can send: text or at least one finished upload, and no upload still
 * running (its message would go without it). */
export function canSend(text: string, uploads: readonly Upload[]): boolean {
  if (uploads.some((u) => u.phase !== 'done')) return false;
  return text.trim().length > 0 || uploads.length > 0;
}

/** How far an upload is, 0..1 (the check after the transfer counts as done). */
export function progressOf(u: Upload): number {
  if (u.phase === 'done' || u.phase === 'completing') return 1;
  if (u.phase === 'presigning' || u.size <= 0) return 0;
  return Math.max(0, Math.min(1, u.loaded / u.size));
}

/** The finished uploads' attachments, in the order they were added. */
export function readyAttachments(uploads: readonly Upload[]): Attachment[] {
  return uploads.flatMap((u) => (u.phase === 'done' && u.attachment ? [u.attachment] : []));
}

/** The server's limit from a 413 `attachment_too_large` ("attachments are at most N
 * bytes"), or null. */
export function maxBytesFrom(message: string): number | null {
  const m = /at most (\d+) bytes/.exec(message);
  const n = m ? Number(m[1]) : NaN;
  return Number.isSafeInteger(n) && n > 0 ? n : null;
}

/** Why an upload failed, in words, from the server's error code and message (REST) or the
 * object store's answer. */
export function uploadErrorText(name: string, code: string, message: string): string {
  const why = message.replace(/[.\s]+$/, '');
  switch (code) {
    case 'attachment_type_refused':
    case 'attachment_type_mismatch':
    case 'invalid_image':
    case 'attachment_too_large':
    case 'too_many_uploads':
    case 'not_uploaded':
      return `“${name}” was not attached: ${why}.`;
    case 'attachments_unavailable':
      return `“${name}” was not attached: this server takes no attachments.`;
    case 'not_found':
      return `“${name}” was not attached: you are not a member of this conversation.`;
    case 'network':
    case 'timeout':
      return `“${name}” was not attached: ${why || 'the server could not be reached'}.`;
    case 'store':
      return `“${name}” could not be uploaded: ${why || 'the file store refused it'}.`;
    default:
      return `“${name}” was not attached: ${why || code}.`;
  }
}

export type AttachmentKind = 'image' | 'pdf' | 'audio' | 'video' | 'archive' | 'text' | 'file';

/** What kind of file an attachment is, for its icon. */
export function kindOf(a: Pick<Attachment, 'content_type' | 'thumb_key'>): AttachmentKind {
  const t = a.content_type;
  if (a.thumb_key !== null || t.startsWith('image/')) return 'image';
  if (t === 'application/pdf') return 'pdf';
  if (t.startsWith('audio/')) return 'audio';
  if (t.startsWith('video/')) return 'video';
  if (t === 'application/zip' || t === 'application/gzip' || t === 'application/x-tar') return 'archive';
  if (t.startsWith('text/')) return 'text';
  return 'file';
}

/** Whether an attachment is shown inline as its thumbnail. */
export function isInlineImage(a: Attachment): boolean {
  return a.thumb_key !== null;
}

/** The size an image is shown at inline: its own aspect, within `box` by `box` pixels (the
 * thumbnail is at most 320 by 320), so that the layout holds still while it loads. */
export function thumbSize(a: Pick<Attachment, 'width' | 'height'>, box = 240): { width: number; height: number } {
  const w = a.width ?? box;
  const h = a.height ?? box;
  const scale = Math.min(1, box / w, box / h);
  return { width: Math.max(1, Math.round(w * scale)), height: Math.max(1, Math.round(h * scale)) };
}

/** A message's text for a list, a quote or a notification: its text, or its files when it
 * has none. */
export function previewOf(m: { content: string; attachments?: readonly Attachment[] }): string {
  if (m.content.trim() !== '' || !m.attachments || m.attachments.length === 0) return m.content;
  const [first] = m.attachments;
  const more = m.attachments.length - 1;
  return more > 0 ? `Files: ${first?.name ?? 'file'} and ${more} more` : `File: ${first?.name ?? 'file'}`;
}

// ---- download URLs -----------------------------------------------------------------------

/** The cache's settings: its clock, how long before expires_at a URL counts as gone, how long
 * to wait before asking again after a 404 (the message may not have reached the read model
 * yet), and how many URLs it keeps. */
export interface LinkCacheOptions {
  now?: () => number;
  marginMs?: number;
  retryDelaysMs?: readonly number[];
  sleep?: (ms: number) => Promise<void>;
  maxEntries?: number;
}

type Fetcher = (convoId: string, attId: string) => Promise<AttachmentLinks>;

/**
 * The download URLs of attachments (GET /conversations/{id}/attachments/{att_id}), kept until
 * shortly before they expire and asked for once however many views want them at the same
 * time. A 404 is asked again a few times (a message that just arrived over the socket may not
 * be in the read model yet); any other failure is the caller's, and the next get asks again.
 */
export class LinkCache {
  private readonly entries = new Map<string, AttachmentLinks>();
  private readonly inflight = new Map<string, Promise<AttachmentLinks>>();
  private readonly now: () => number;
  private readonly marginMs: number;
  private readonly retryDelaysMs: readonly number[];
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly maxEntries: number;

  constructor(
    private readonly fetcher: Fetcher,
    opts: LinkCacheOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.marginMs = opts.marginMs ?? 20_000;
    this.retryDelaysMs = opts.retryDelaysMs ?? [500, 1000, 2000, 4000];
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.maxEntries = opts.maxEntries ?? 500;
  }

  private static key(convoId: string, attId: string): string {
    return `${convoId}\n${attId}`;
  }

  /** The URLs if they are kept and still good for a while, else null. */
  peek(convoId: string, attId: string): AttachmentLinks | null {
    const k = LinkCache.key(convoId, attId);
    const e = this.entries.get(k);
    if (!e) return null;
    if (e.expires_at - this.marginMs <= this.now()) {
      this.entries.delete(k);
      return null;
    }
    return e;
  }

  /** The URLs: kept ones while they are good, else asked for (once for every caller). */
  get(convoId: string, attId: string): Promise<AttachmentLinks> {
    const kept = this.peek(convoId, attId);
    if (kept) return Promise.resolve(kept);
    const k = LinkCache.key(convoId, attId);
    const running = this.inflight.get(k);
    if (running) return running;
    const p = this.fetchWithRetry(convoId, attId)
      .then((links) => {
        this.entries.delete(k);
        this.entries.set(k, links);
        while (this.entries.size > this.maxEntries) {
          const oldest = this.entries.keys().next().value;
          if (oldest === undefined) break;
          this.entries.delete(oldest);
        }
        return links;
      })
      .finally(() => this.inflight.delete(k));
    this.inflight.set(k, p);
    return p;
  }

  /** Forgets the URLs of an attachment (its message was deleted). */
  forget(convoId: string, attId: string): void {
    this.entries.delete(LinkCache.key(convoId, attId));
  }

  /** When the URLs kept for an attachment stop counting as good (ms), or null. */
  staleAt(convoId: string, attId: string): number | null {
    const e = this.entries.get(LinkCache.key(convoId, attId));
    return e ? e.expires_at - this.marginMs : null;
  }

  private async fetchWithRetry(convoId: string, attId: string): Promise<AttachmentLinks> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.fetcher(convoId, attId);
      } catch (e) {
        const status = typeof e === 'object' && e !== null && 'status' in e ? (e as { status: unknown }).status : null;
        const delay = this.retryDelaysMs[attempt];
        if (status !== 404 || delay === undefined) throw e;
        await this.sleep(delay);
      }
    }
  }
}
