import { useEffect, useRef, useState, type RefObject } from 'react';
import type { AttachmentLinks } from '../api';
import { isInlineImage, kindOf, progressOf, thumbSize, type AttachmentKind, type Upload } from '../attachments';
import type { ChatClient } from '../chat';
import type { Attachment } from '../protocol';
import { sizeOf } from './format';

/** The few letters on a file's icon. */
const ICON_LABELS: Record<AttachmentKind, string> = {
  image: 'IMG',
  pdf: 'PDF',
  audio: 'AUD',
  video: 'VID',
  archive: 'ZIP',
  text: 'TXT',
  file: 'FILE',
};

const KIND_NAMES: Record<AttachmentKind, string> = {
  image: 'image',
  pdf: 'PDF',
  audio: 'audio',
  video: 'video',
  archive: 'archive',
  text: 'text',
  file: 'file',
};

/** A paperclip, for the composer's attach button. */
export function PaperclipIcon() {
  return (
    <svg className="icon" viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" focusable="false">
      <path
        d="M16 6.5v10a4 4 0 0 1-8 0v-11a2.5 2.5 0 0 1 5 0v10a1 1 0 0 1-2 0v-8.5"
        transform="rotate(40 12 12)"
        fill="none"
        stroke="currentColor"
        strokeWidth="1.8"
        strokeLinecap="round"
      />
    </svg>
  );
}

export function FileIcon({ kind }: { kind: AttachmentKind }) {
  return (
    <span className="file-icon" aria-hidden="true" data-kind={kind}>
      {ICON_LABELS[kind]}
    </span>
  );
}

/** Whether the element has come near the visible part of the page (always true where the
 * browser cannot tell). */
function useNearView(ref: RefObject<HTMLElement | null>): boolean {
  const [near, setNear] = useState(typeof IntersectionObserver === 'undefined');
  useEffect(() => {
    const el = ref.current;
    if (near || !el || typeof IntersectionObserver === 'undefined') return;
    const io = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) setNear(true);
      },
      { rootMargin: '300px 0px' },
    );
    io.observe(el);
    return () => io.disconnect();
  }, [ref, near]);
  return near;
}

/**
 * The download URLs of an attachment once it comes near the view: from the client's cache
 * while they are good, asked for again when they run out (and the element is still there).
 */
function useLinks(client: ChatClient, convoId: string, att: Attachment, near: boolean): { links: AttachmentLinks | null; failed: boolean } {
  const [links, setLinks] = useState<AttachmentLinks | null>(() => client.links.peek(convoId, att.id));
  const [failed, setFailed] = useState(false);
  const [round, setRound] = useState(0);
  useEffect(() => {
    if (!near) return;
    let live = true;
    client.links.get(convoId, att.id).then(
      (l) => {
        if (!live) return;
        setLinks(l);
        setFailed(false);
      },
      () => {
        if (live) setFailed(true);
      },
    );
    return () => {
      live = false;
    };
  }, [client, convoId, att.id, near, round]);
  // URLs live a few minutes: fresh ones shortly before these run out
  useEffect(() => {
    if (!links) return;
    const at = client.links.staleAt(convoId, att.id) ?? links.expires_at;
    const t = setTimeout(() => setRound((r) => r + 1), Math.max(1000, Math.min(at - Date.now(), 2 ** 31 - 1)));
    return () => clearTimeout(t);
  }, [client, convoId, att.id, links]);
  return { links, failed };
}

function InlineImage({ client, convoId, att }: { client: ChatClient; convoId: string; att: Attachment }) {
  const box = useRef<HTMLSpanElement>(null);
  const near = useNearView(box);
  const { links, failed } = useLinks(client, convoId, att, near);
  const { width, height } = thumbSize(att);
  const src = links?.thumb_url ?? links?.url ?? null;
  return (
    <span className="att-image" ref={box} data-testid="attachment-image" data-attachment-id={att.id}>
      {links && src ? (
        <a href={links.url} target="_blank" rel="noopener noreferrer" title={`Open ${att.name} (${sizeOf(att.size)}) in a new tab`}>
          <img src={src} alt={att.name} width={width} height={height} decoding="async" />
        </a>
      ) : (
        <span
          className={`att-placeholder${failed ? ' att-failed' : ''}`}
          role="img"
          aria-label={failed ? `${att.name} (not available)` : att.name}
          ref={(el) => {
            if (el) {
              el.style.width = `${width}px`;
              el.style.height = `${height}px`;
            }
          }}
        >
          {failed ? 'Not available' : ''}
        </span>
      )}
    </span>
  );
}

function FileCard({ client, convoId, att }: { client: ChatClient; convoId: string; att: Attachment }) {
  const box = useRef<HTMLSpanElement>(null);
  const near = useNearView(box);
  const { links, failed } = useLinks(client, convoId, att, near);
  const kind = kindOf(att);
  const inner = (
    <>
      <FileIcon kind={kind} />
      <span className="file-text">
        <span className="file-name" dir="auto">
          {att.name}
        </span>
        <span className="file-size">
          {KIND_NAMES[kind]} · {sizeOf(att.size)}
          {failed ? ' · not available' : ''}
        </span>
      </span>
    </>
  );
  return (
    <span className="file-card-box" ref={box} data-attachment-id={att.id}>
      {links ? (
        <a className="file-card" data-testid="file-card" href={links.url} target="_blank" rel="noopener noreferrer" title={`Download ${att.name}`}>
          {inner}
        </a>
      ) : (
        <span className="file-card" data-testid="file-card" aria-disabled="true">
          {inner}
        </span>
      )}
    </span>
  );
}

/** A message's files: images inline as their thumbnails, other files as cards. */
export function MessageAttachments({ client, convoId, attachments }: { client: ChatClient; convoId: string; attachments: readonly Attachment[] }) {
  if (attachments.length === 0) return null;
  const images = attachments.filter(isInlineImage);
  const files = attachments.filter((a) => !isInlineImage(a));
  return (
    <span className="attachments" data-testid="attachments">
      {images.length > 0 && (
        <span className="att-images">
          {images.map((a) => (
            <InlineImage key={a.id} client={client} convoId={convoId} att={a} />
          ))}
        </span>
      )}
      {files.map((a) => (
        <FileCard key={a.id} client={client} convoId={convoId} att={a} />
      ))}
    </span>
  );
}

/** The files of a message still being sent: names only (no URL before it is stored). */
export function PendingAttachments({ attachments }: { attachments: readonly Attachment[] }) {
  if (attachments.length === 0) return null;
  return (
    <span className="attachments" data-testid="attachments">
      {attachments.map((a) => (
        <span key={a.id} className="file-card" aria-disabled="true">
          <FileIcon kind={kindOf(a)} />
          <span className="file-text">
            <span className="file-name" dir="auto">
              {a.name}
            </span>
            <span className="file-size">{sizeOf(a.size)}</span>
          </span>
        </span>
      ))}
    </span>
  );
}

const PHASE_TEXT: Record<Upload['phase'], string> = {
  presigning: 'Starting…',
  uploading: 'Uploading…',
  completing: 'Checking…',
  done: 'Ready',
};

/** The files being attached in the composer: each with its progress and a button that
 * cancels it (or takes it back out once it is ready). */
export function UploadChips({ uploads, onCancel }: { uploads: readonly Upload[]; onCancel: (key: string) => void }) {
  if (uploads.length === 0) return null;
  return (
    <ul className="uploads" aria-label="Files to send" data-testid="uploads">
      {uploads.map((u) => {
        const running = u.phase !== 'done';
        const pct = Math.round(progressOf(u) * 100);
        return (
          <li key={u.key} className={`upload upload-${u.phase}`} data-testid="upload" data-phase={u.phase} data-name={u.name}>
            <FileIcon kind={kindOf({ content_type: u.content_type, thumb_key: null })} />
            <span className="upload-text">
              <span className="file-name" dir="auto">
                {u.name}
              </span>
              <span className="file-size">
                {sizeOf(u.size)} · <span className="upload-phase">{u.phase === 'uploading' ? `${pct}%` : PHASE_TEXT[u.phase]}</span>
              </span>
              {running && (
                <progress
                  className="upload-progress"
                  max={100}
                  value={u.phase === 'presigning' ? undefined : pct}
                  aria-label={`Uploading ${u.name}`}
                  data-testid="upload-progress"
                />
              )}
            </span>
            <button
              type="button"
              className="ghost upload-cancel"
              aria-label={running ? `Cancel upload of ${u.name}` : `Remove ${u.name}`}
              title={running ? 'Cancel the upload' : 'Remove this file'}
              onClick={() => onCancel(u.key)}
            >
              ×
            </button>
          </li>
        );
      })}
    </ul>
  );
}
