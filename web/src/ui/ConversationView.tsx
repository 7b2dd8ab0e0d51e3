import { useEffect, useId, useLayoutEffect, useMemo, useRef, useState, type ClipboardEvent, type DragEvent, type KeyboardEvent } from 'react';
import { admitFiles, canSend, contentTypeOf, previewOf, readyAttachments, uploadErrorText, type Upload } from '../attachments';
import { ApiError } from '../api';
import type { ChatClient, ChatState } from '../chat';
import { MAX_ATTACHMENTS, MAX_CONTENT_BYTES, utf8Bytes, type Attachment, type Message, type Reaction } from '../protocol';
import { contiguousTop, emptyLog, emptyReceipts, hasSeq, messageAt, oldestSeq, seenByText, tickFor, type ConvoLog, type PendingMessage, type Tick } from '../store';
import { dayLabelOf, dayNumberOf, fullTimeOf, lastSeenText, layoutOf, nameOf, snippetOf, timeOf, titleOf } from './format';
import { MessageAttachments, PaperclipIcon, PendingAttachments, UploadChips } from './Attachments';
import { MessageText } from './MessageText';
import { MemberPanel } from './MemberPanel';
import { MuteMenu } from './MuteMenu';
import { ReactionChips, ReactionPalette } from './Reactions';

const tickLabel: Record<Tick, string> = {
  sending: 'Sending…',
  failed: 'Not sent',
  sent: 'Sent',
  delivered: 'Delivered',
  read: 'Read',
};

const noReactions: readonly Reaction[] = [];
const noAttachments: readonly Attachment[] = [];

/** Whether a drag carries files (not text or a link dragged from the page). */
function dragsFiles(e: DragEvent): boolean {
  return Array.from(e.dataTransfer?.types ?? []).includes('Files');
}

/** how long a message shown from a quote stays highlighted */
const HIGHLIGHT_MS = 2000;

/** how long the message a conversation was opened at (a search result, a link) stays
 * highlighted */
const TARGET_HIGHLIGHT_MS = 3000;

/** the composer grows with its text up to this many lines, then scrolls */
const COMPOSER_LINES = 8;

const tickGlyph: Record<Tick, string> = {
  sending: '◷',
  failed: '!',
  sent: '✓',
  delivered: '✓✓',
  read: '✓✓',
};

function TickMark({ tick }: { tick: Tick }) {
  return (
    <span className={`tick tick-${tick}`} data-tick={tick} title={tickLabel[tick]}>
      <span aria-hidden="true">{tickGlyph[tick]}</span>
      <span className="visually-hidden">{tickLabel[tick]}</span>
    </span>
  );
}

/** What a quote of seq_no `seq` shows: the sender and the start of the message, or that it
 * was deleted, or only its number when it is not loaded. */
interface QuoteInfo {
  seq: number;
  sender: string | null;
  text: string;
  deleted: boolean;
}

function quoteInfo(log: ConvoLog, seq: number, names: Readonly<Record<string, string>>): QuoteInfo {
  const q = messageAt(log, seq);
  if (!q) return { seq, sender: null, text: `message #${seq}`, deleted: false };
  const sender = nameOf(names, q.sender_id);
  return q.deleted ? { seq, sender, text: 'deleted message', deleted: true } : { seq, sender, text: snippetOf(previewOf(q)), deleted: false };
}

/** The quote above a reply: a button that shows the quoted message. */
function Quote({ q, onJump }: { q: QuoteInfo; onJump: (seq: number) => void }) {
  return (
    <button
      type="button"
      className={`quote${q.sender === null ? ' quote-missing' : ''}`}
      data-testid="quote"
      data-reply-to={q.seq}
      title="Show the message it replies to"
      onClick={() => onJump(q.seq)}
    >
      <span className="visually-hidden">In reply to </span>
      {q.sender !== null && <span className="quote-sender">{q.sender}</span>}
      <span className={`quote-text${q.deleted ? ' deleted' : ''}`} dir="auto">
        {q.text}
      </span>
    </button>
  );
}

interface Props {
  client: ChatClient;
  state: ChatState;
  id: string;
  /** the message to open at (a search result, a message link): shown and highlighted */
  target: number | null;
  onBack: () => void;
  /** back to the newest messages from an older part (its address becomes the
   * conversation's own) */
  onLatest: () => void;
}

export function ConversationView({ client, state, id, target, onBack, onLatest }: Props) {
  const me = state.me.user_id;
  const conv = state.conversations.find((c) => c.id === id);
  const log = state.logs[id] ?? emptyLog;
  // an older part on screen (opened at a message) shows what joins it without a hole; what
  // came later waits until the newer pages reach it
  const messages = useMemo(() => {
    if (state.views[id]?.detached !== true) return log.messages;
    const top = contiguousTop(log);
    return log.messages.filter((m) => m.seq_no <= top);
  }, [log, state.views, id]);
  const receipts = state.receipts[id] ?? emptyReceipts;
  const view = state.views[id];
  const scroller = useRef<HTMLDivElement>(null);
  const topSentinel = useRef<HTMLDivElement>(null);
  const bottomSentinel = useRef<HTMLDivElement>(null);
  /** the message to open at: still to be shown, shown, or not to be found */
  const targetState = useRef<'pending' | 'shown' | 'gone'>(target === null ? 'gone' : 'pending');
  const detached = view?.detached === true;
  const composer = useRef<HTMLTextAreaElement>(null);
  const stick = useRef(target === null);
  const prevHeight = useRef<{ first: number | null; height: number }>({ first: null, height: 0 });
  // The first unread message when the conversation was opened: a divider above it, and the
  // view opens there instead of at the bottom (older pages are loaded to reach it when it is
  // not among the latest). Until it is placed there, nothing counts as seen.
  // (Opened at a message, the view opens there instead.)
  const [dividerSeq] = useState<number | null>(() => (target === null && conv && conv.unread > 0 ? conv.last_seq - conv.unread + 1 : null));
  const placed = useRef(dividerSeq === null && target === null);
  /** loading older pages to reach the first unread message */
  const unreadLoad = useRef<'idle' | 'loading' | 'done' | 'failed'>('idle');
  const [unreadGaveUp, setUnreadGaveUp] = useState(false);
  const [atBottom, setAtBottom] = useState(true);
  const [text, setText] = useState('');
  const [sendError, setSendError] = useState<string | null>(null);
  /** the files being attached to the message being written, in the order added */
  const [uploads, setUploads] = useState<Upload[]>([]);
  const uploadsNow = useRef<Upload[]>([]);
  const uploadHandles = useRef(new Map<string, { cancel(): void }>());
  const uploadSeq = useRef(0);
  /** why files were not attached, until the next message goes */
  const [uploadErrors, setUploadErrors] = useState<string[]>([]);
  const [dragging, setDragging] = useState(false);
  const fileInput = useRef<HTMLInputElement>(null);
  const composerId = useId();
  const titleId = useId();
  const [showDetails, setShowDetails] = useState(false);
  const detailsButton = useRef<HTMLButtonElement>(null);
  /** the seq_no the message being written replies to */
  const [replyTo, setReplyTo] = useState<number | null>(null);
  /** the message just shown from a quote, highlighted for a moment */
  const [highlight, setHighlight] = useState<number | null>(null);
  const highlightTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  /** a quoted message being loaded, shown once it is */
  const jumpTarget = useRef<number | null>(null);

  function changeUploads(fn: (us: Upload[]) => Upload[]) {
    uploadsNow.current = fn(uploadsNow.current);
    setUploads(uploadsNow.current);
  }

  function patchUpload(key: string, patch: Partial<Upload>) {
    changeUploads((us) => us.map((u) => (u.key === key ? { ...u, ...patch } : u)));
  }

  /** Attaches files (picker, drop or paste): each is uploaded at once, in the background. */
  function addFiles(files: File[]) {
    if (files.length === 0) return;
    const { admitted, refused } = admitFiles(uploadsNow.current, files, client.attachmentMaxBytes);
    setUploadErrors(refused);
    setSendError(null);
    for (const file of admitted) {
      const key = `u${++uploadSeq.current}`;
      const u: Upload = { key, name: file.name || 'file', size: file.size, content_type: contentTypeOf(file), phase: 'presigning', loaded: 0 };
      changeUploads((us) => [...us, u]);
      const h = client.upload(id, file, {
        uploading: () => patchUpload(key, { phase: 'uploading' }),
        progress: (loaded) => patchUpload(key, { loaded }),
        completing: () => patchUpload(key, { phase: 'completing', loaded: file.size }),
      });
      uploadHandles.current.set(key, h);
      h.done.then(
        (attachment) => {
          uploadHandles.current.delete(key);
          patchUpload(key, { phase: 'done', attachment });
        },
        (e: unknown) => {
          uploadHandles.current.delete(key);
          changeUploads((us) => us.filter((x) => x.key !== key));
          if (e instanceof ApiError && e.code === 'cancelled') return;
          const text = e instanceof ApiError ? uploadErrorText(u.name, e.code, e.message) : uploadErrorText(u.name, 'error', e instanceof Error ? e.message : '');
          setUploadErrors((errs) => [...errs, text]);
        },
      );
    }
  }

  /** Cancels an upload (its PUT is aborted), or takes a finished one back out. */
  function cancelUpload(key: string) {
    uploadHandles.current.get(key)?.cancel();
    uploadHandles.current.delete(key);
    changeUploads((us) => us.filter((u) => u.key !== key));
    composer.current?.focus();
  }

  // leaving the conversation cancels what is still uploading
  useEffect(
    () => () => {
      for (const h of uploadHandles.current.values()) h.cancel();
      uploadHandles.current.clear();
    },
    [],
  );

  function onDragOver(e: DragEvent<HTMLElement>) {
    if (!dragsFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
    if (!dragging) setDragging(true);
  }

  function onDragLeave(e: DragEvent<HTMLElement>) {
    const to = e.relatedTarget;
    if (!(to instanceof Node) || !e.currentTarget.contains(to)) setDragging(false);
  }

  function onDrop(e: DragEvent<HTMLElement>) {
    setDragging(false);
    if (!dragsFiles(e) && (e.dataTransfer?.files.length ?? 0) === 0) return;
    e.preventDefault();
    addFiles(Array.from(e.dataTransfer.files));
  }

  function onPaste(e: ClipboardEvent<HTMLTextAreaElement>) {
    const files = Array.from(e.clipboardData?.files ?? []);
    if (files.length === 0) return;
    // an image copied alone is attached; text that came with it is pasted as usual
    if (!Array.from(e.clipboardData.types).includes('text/plain')) e.preventDefault();
    addFiles(files);
  }

  function closeDetails() {
    setShowDetails(false);
    // the page is inert until the dialog has gone: back to the button after that
    requestAnimationFrame(() => detailsButton.current?.focus());
  }

  const title = conv ? titleOf(conv, state.names, me) : 'Conversation';
  const others = conv ? conv.members.filter((m) => m.user_id !== me) : [];
  const typingUsers = Object.keys(state.typing[id] ?? {}).filter((u) => u !== me);

  /** Whether the message to open at may still come (its page is being loaded). */
  function targetComing(): boolean {
    return !view?.error && (view?.loadingLatest === true || log.messages.length === 0);
  }

  /** Whether the first unread message may still come (the latest page, or the older pages
   * that reach it, are being loaded); false when it cannot be shown. */
  function unreadComing(): boolean {
    if (dividerSeq === null) return false;
    if (log.messages.length === 0 || view?.loadingLatest) return !view?.error;
    if (hasSeq(log, dividerSeq)) return true;
    const oldest = oldestSeq(log);
    return oldest !== null && oldest > dividerSeq && !log.reachedStart && unreadLoad.current !== 'failed';
  }

  // keep the view at the bottom when new messages come, and in place when older ones are
  // added above
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const first = log.messages[0]?.seq_no ?? null;
    const prev = prevHeight.current;
    if (targetState.current === 'pending' && target !== null) {
      // opened at a message: it is shown in the middle of the view, highlighted
      if (showMessage(target, TARGET_HIGHLIGHT_MS)) {
        targetState.current = 'shown';
        placed.current = true;
        prevHeight.current = { first, height: el.scrollHeight };
        return;
      }
      if (targetComing()) {
        prevHeight.current = { first, height: el.scrollHeight };
        return;
      }
      // not there (deleted for good, or a link past the end): the newest messages instead
      targetState.current = 'gone';
      placed.current = true;
      stick.current = !detached;
    }
    const divider = placed.current ? null : el.querySelector<HTMLElement>('[data-testid="unread-divider"]');
    if (!placed.current && !divider && !unreadComing()) placed.current = true; // as without unread messages
    if (divider) {
      // opened with unread messages: the first of them at the top of the view, under the
      // divider (and its day, when it is the first of a day)
      placed.current = true;
      const above = divider.previousElementSibling;
      const anchor = above instanceof HTMLElement && above.classList.contains('day-separator') ? above : divider;
      el.scrollTop += anchor.getBoundingClientRect().top - el.getBoundingClientRect().top - 8;
      stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
      setAtBottom(stick.current);
    } else if (prev.first !== null && first !== null && first < prev.first && !stick.current) {
      el.scrollTop += el.scrollHeight - prev.height;
    } else if (stick.current) {
      el.scrollTop = el.scrollHeight;
    }
    prevHeight.current = { first, height: el.scrollHeight };
  }, [log.messages, log.pending, typingUsers.length, unreadGaveUp, view?.loadingLatest]); // eslint-disable-line react-hooks/exhaustive-deps

  // back at the newest messages after an older part: stay at the bottom from there on if
  // the reader is there
  useEffect(() => {
    if (!detached) onScroll();
  }, [detached]); // eslint-disable-line react-hooks/exhaustive-deps

  // the first unread message is older than the latest page: load the pages up to it
  useEffect(() => {
    if (placed.current || dividerSeq === null || unreadLoad.current !== 'idle' || view?.loadingLatest) return;
    const oldest = oldestSeq(log);
    if (oldest === null || oldest <= dividerSeq || log.reachedStart) return;
    unreadLoad.current = 'loading';
    void client.loadThrough(id, dividerSeq).then((found) => {
      unreadLoad.current = found ? 'done' : 'failed';
      if (!found) setUnreadGaveUp(true); // opens at the bottom, as without unread messages
    });
  }, [client, id, dividerSeq, log, view?.loadingLatest]);

  // a quoted message that was being loaded is here: show it
  useLayoutEffect(() => {
    const seq = jumpTarget.current;
    if (seq !== null && showMessage(seq)) jumpTarget.current = null;
  }, [log.messages]); // eslint-disable-line react-hooks/exhaustive-deps

  useEffect(
    () => () => {
      if (highlightTimer.current) clearTimeout(highlightTimer.current);
    },
    [],
  );

  // on a wide screen, opening a conversation puts the cursor in its composer (on a phone
  // that would pop the keyboard over the messages)
  // (opened at a message, that message has the focus instead)
  useEffect(() => {
    if (target === null && window.matchMedia('(min-width: 721px)').matches) composer.current?.focus();
  }, [id]); // eslint-disable-line react-hooks/exhaustive-deps

  // load older pages when the top comes into view
  useEffect(() => {
    const el = topSentinel.current;
    const root = scroller.current;
    if (!el || !root || typeof IntersectionObserver === 'undefined') return;
    const io = new IntersectionObserver(
      (entries) => {
        if (targetState.current === 'pending') return; // not where it opens yet
        if (entries.some((e) => e.isIntersecting) && log.messages.length > 0) void client.loadOlder(id);
      },
      { root, rootMargin: '200px 0px 0px 0px' },
    );
    io.observe(el);
    return () => io.disconnect();
  }, [client, id, log.messages.length]);

  // an older part on screen: load newer pages when the bottom comes into view, until they
  // reach the newest messages
  useEffect(() => {
    const el = bottomSentinel.current;
    const root = scroller.current;
    if (!detached || !el || !root || typeof IntersectionObserver === 'undefined') return;
    const io = new IntersectionObserver(
      (entries) => {
        if (targetState.current === 'pending') return;
        if (entries.some((e) => e.isIntersecting)) void client.loadNewer(id);
      },
      { root, rootMargin: '0px 0px 200px 0px' },
    );
    io.observe(el);
    return () => io.disconnect();
  }, [client, id, log.messages.length, detached, view?.loadingNewer]);

  // what has been on screen counts as read, nothing else: each bubble reports once at least
  // half of it (or half of the view, for a long one) has been visible
  useEffect(() => {
    const root = scroller.current;
    if (!root || typeof IntersectionObserver === 'undefined') return;
    const io = new IntersectionObserver(
      (entries) => {
        // not yet where the conversation opens: what passes by now was not read
        if (!placed.current) return;
        let max = 0;
        for (const e of entries) {
          const half = e.intersectionRatio >= 0.5 || e.intersectionRect.height >= (e.rootBounds?.height ?? Infinity) / 2;
          if (e.isIntersecting && half) max = Math.max(max, Number((e.target as HTMLElement).dataset.seq) || 0);
        }
        if (max > 0) client.sawUpTo(id, max);
      },
      { root, threshold: [0, 0.25, 0.5, 0.75, 1] },
    );
    root.querySelectorAll('li.bubble[data-seq]').forEach((li) => io.observe(li));
    return () => io.disconnect();
  }, [client, id, log.messages, unreadGaveUp]);

  // the composer grows with its text up to COMPOSER_LINES lines (or its max-height), then
  // scrolls; the history keeps its bottom in view when it was there
  useLayoutEffect(() => {
    const el = composer.current;
    if (!el) return;
    const cs = getComputedStyle(el);
    const px = (v: string) => parseFloat(v) || 0;
    const line = px(cs.lineHeight) || px(cs.fontSize) * 1.4;
    const frame = px(cs.paddingTop) + px(cs.paddingBottom) + px(cs.borderTopWidth) + px(cs.borderBottomWidth);
    const max = Math.min(Math.ceil(line * COMPOSER_LINES + frame), px(cs.maxHeight) || Infinity);
    el.style.height = 'auto';
    const want = el.scrollHeight + px(cs.borderTopWidth) + px(cs.borderBottomWidth);
    el.style.height = `${Math.min(want, max)}px`;
    el.style.overflowY = want > max ? 'auto' : 'hidden';
    const list = scroller.current;
    if (list && stick.current) list.scrollTop = list.scrollHeight;
  }, [text]);

  function onScroll() {
    const el = scroller.current;
    if (!el) return;
    // an older part does not stick to its bottom: newer pages come in below it
    stick.current = !detached && el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    if (stick.current !== atBottom) setAtBottom(stick.current);
  }

  /** Scrolls the loaded message `seq` into view, focuses it and highlights it for a moment;
   * false when it is not on the page. */
  function showMessage(seq: number, ms = HIGHLIGHT_MS): boolean {
    const el = scroller.current?.querySelector<HTMLElement>(`li.bubble[data-seq="${seq}"]`);
    if (!el) return false;
    el.scrollIntoView({ block: 'center' });
    el.focus({ preventScroll: true });
    onScroll();
    setHighlight(seq);
    if (highlightTimer.current) clearTimeout(highlightTimer.current);
    highlightTimer.current = setTimeout(() => setHighlight(null), ms);
    return true;
  }

  /** A quote was clicked: show the quoted message, loading older history to reach it when it
   * is older than what is loaded. */
  function jumpTo(seq: number) {
    if (showMessage(seq)) return;
    jumpTarget.current = seq;
    void client.loadThrough(id, seq).then((found) => {
      // not reachable (a gap the backfill is filling, or too far back): no jump later on
      if (!found && jumpTarget.current === seq) jumpTarget.current = null;
    });
  }

  function startReply(seq: number) {
    setReplyTo(seq);
    composer.current?.focus();
  }

  function toBottom() {
    if (detached) {
      onLatest();
      return;
    }
    const el = scroller.current;
    if (!el) return;
    el.scrollTop = el.scrollHeight;
    stick.current = true;
    setAtBottom(true);
  }

  // "seen by" under my latest message, in groups (in a pair the tick says it)
  const myLast = [...messages].reverse().find((m) => m.sender_id === me && !m.deleted);
  const seenBy =
    myLast && others.length > 1
      ? others.filter((m) => (receipts.readBy[m.user_id] ?? 0) >= myLast.seq_no).map((m) => m.username ?? nameOf(state.names, m.user_id))
      : [];
  // a large group's receipts name at most 50 members: when my message is the conversation's
  // last, the server's count (me, its sender, included) says how many in all
  const counted = myLast && conv?.receipt_counts && myLast.seq_no === conv.receipt_counts.seq ? conv.receipt_counts.read - 1 : 0;
  const seenText = seenByText(seenBy, counted);

  // what has not been on screen yet is what the conversation counts unread (chat.ts)
  const newBelow = conv?.unread ?? 0;

  function send() {
    if (uploads.some((u) => u.phase !== 'done')) {
      setSendError('Wait until the files have finished uploading, or cancel them.');
      return;
    }
    const err = client.sendMessage(id, text, replyTo ?? undefined, readyAttachments(uploads));
    if (err) {
      setSendError(err);
      return;
    }
    setText('');
    setSendError(null);
    changeUploads(() => []);
    setUploadErrors([]);
    setReplyTo(null);
    stick.current = true;
    // sent from an older part: the client goes back to the newest messages, and so does the
    // address
    if (detached) onLatest();
  }

  function onKey(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      send();
    } else if (e.key === 'Escape' && replyTo !== null) {
      e.preventDefault();
      setReplyTo(null);
    }
  }

  // date separators and groups of one sender; the unread divider starts a new group
  const layout = useMemo(
    () => layoutOf(messages, Date.now(), { breakBefore: (m) => m.seq_no === dividerSeq }),
    [messages, dividerSeq],
  );
  // messages being sent are today's: a separator above them when the last stored one is older
  const lastStored = messages.at(-1);
  const pendingDay =
    log.pending.length > 0 && (!lastStored || (lastStored.created_at && dayNumberOf(lastStored.created_at) !== dayNumberOf(Date.now())))
      ? dayLabelOf(Date.now(), Date.now())
      : null;

  const replying = replyTo !== null ? quoteInfo(log, replyTo, state.names) : null;
  const describedBy = [replying ? `${composerId}-reply` : '', sendError ? `${composerId}-err` : '', uploadErrors.length > 0 ? `${composerId}-upload-err` : '']
    .filter(Boolean)
    .join(' ');

  const bytes = utf8Bytes(text);
  const presenceLine = others
    .map((m) => {
      const p = state.presence[m.user_id];
      const name = m.username ?? nameOf(state.names, m.user_id);
      return `${name}: ${p ? (p.online ? 'online' : lastSeenText(p.last_seen)) : 'unknown'}`;
    })
    .join(' · ');

  return (
    <section
      className={`convo${dragging ? ' dragging' : ''}`}
      aria-labelledby={titleId}
      onDragOver={onDragOver}
      onDragEnter={onDragOver}
      onDragLeave={onDragLeave}
      onDrop={onDrop}
      data-testid="conversation"
    >
      {dragging && (
        <div className="drop-hint" aria-hidden="true">
          Drop files to attach them
        </div>
      )}
      <header className="convo-header">
        <button type="button" className="ghost back" onClick={onBack} aria-label="Back to conversations">
          ←
        </button>
        <div className="convo-heading">
          <h2 id={titleId} dir="auto">
            {title}
          </h2>
          {conv?.topic && (
            <p className="topic" data-testid="topic" title={conv.topic}>
              <span className="visually-hidden">Topic: </span>
              {conv.topic}
            </p>
          )}
          <p className="presence-line" data-testid="presence">
            {others.map((m, i) => {
              const p = state.presence[m.user_id];
              return (
                <span key={m.user_id} data-user-id={m.user_id} data-online={p?.online ? 'true' : 'false'}>
                  {i > 0 ? ' · ' : ''}
                  <span className={`presence-dot${p?.online ? ' online' : ''}`} aria-hidden="true" />
                  {m.username ?? nameOf(state.names, m.user_id)}{' '}
                  {p ? (p.online ? 'online' : lastSeenText(p.last_seen)) : ''}
                </span>
              );
            })}
            <span className="visually-hidden">{presenceLine}</span>
          </p>
        </div>
        {conv && <MuteMenu client={client} conv={conv} />}
        {conv && (
          <button
            type="button"
            ref={detailsButton}
            className="ghost members-button"
            aria-haspopup="dialog"
            aria-expanded={showDetails}
            data-testid="members-button"
            onClick={() => setShowDetails(true)}
          >
            {conv.kind === 'direct' ? 'Details' : `Members (${conv.members.length})`}
          </button>
        )}
      </header>
      {showDetails && conv && <MemberPanel client={client} state={state} conv={conv} onClose={closeDetails} />}
      <div
        className="messages"
        ref={scroller}
        onScroll={onScroll}
        tabIndex={0}
        role="region"
        aria-label="Message history (scroll up for older messages)"
      >
        <div ref={topSentinel} />
        {log.reachedStart ? (
          <p className="muted center">This is the beginning of the conversation.</p>
        ) : (
          log.messages.length > 0 && (
            <button
              type="button"
              className="ghost center load-older"
              onClick={() => void client.loadOlder(id)}
              disabled={view?.loadingOlder}
            >
              {view?.loadingOlder ? 'Loading older messages…' : 'Load older messages'}
            </button>
          )
        )}
        {view?.loadingLatest && log.messages.length === 0 && <p className="muted center">Loading messages…</p>}
        {view?.error && (
          <p className="error center" role="alert">
            {view.error}
          </p>
        )}
        <div role="log" aria-live="polite" aria-label={`Messages in ${title}`} data-testid="messages">
        <ol className="message-list">
          {messages.map((m, i) => [
            layout[i]?.day && (
              <li key={`day-${m.seq_no}`} className="day-separator" data-testid="date-separator">
                <h3>{layout[i]?.day}</h3>
              </li>
            ),
            m.seq_no === dividerSeq && (
              // a list item, not role="separator": an <ol> holds list items only (axe's "list" rule)
              <li key="divider" className="unread-divider" data-testid="unread-divider">
                New messages
              </li>
            ),
            <MessageItem
              key={m.seq_no}
              client={client}
              convoId={id}
              seenText={m === myLast ? seenText : ''}
              m={m}
              mine={m.sender_id === me}
              continues={layout[i]?.continues ?? false}
              sender={nameOf(state.names, m.sender_id)}
              tick={m.sender_id === me ? tickFor(m.seq_no, receipts, me) : null}
              quote={m.reply_to !== undefined && !m.deleted ? quoteInfo(log, m.reply_to, state.names) : null}
              highlighted={m.seq_no === highlight}
              onJump={jumpTo}
              onReply={() => startReply(m.seq_no)}
              onChange={(content) => client.changeMessage(id, m.seq_no, content)}
              onReact={(emoji) => client.react(id, m.seq_no, emoji)}
            />,
          ])}
          {pendingDay && (
            <li key="day-pending" className="day-separator" data-testid="date-separator">
              <h3>{pendingDay}</h3>
            </li>
          )}
          {log.pending.map((p) => (
            <PendingItem
              key={p.client_msg_id}
              p={p}
              quote={p.reply_to !== undefined ? quoteInfo(log, p.reply_to, state.names) : null}
              onJump={jumpTo}
              onRetry={() => client.retry(id, p.client_msg_id)}
              onDiscard={() => client.discard(id, p.client_msg_id)}
            />
          ))}
        </ol>
        </div>
        {detached && (
          <button
            type="button"
            className="ghost center load-newer"
            onClick={() => void client.loadNewer(id)}
            disabled={view?.loadingNewer}
            data-testid="load-newer"
          >
            {view?.loadingNewer ? 'Loading newer messages…' : 'Load newer messages'}
          </button>
        )}
        <div ref={bottomSentinel} />
        <p className="typing" aria-live="polite" data-testid="typing">
          {typingUsers.length > 0 &&
            `${typingUsers.map((u) => nameOf(state.names, u)).join(', ')} ${typingUsers.length > 1 ? 'are' : 'is'} typing…`}
        </p>
      </div>
      {(detached || (!atBottom && newBelow > 0)) && (
        <button type="button" className="new-pill" data-testid="new-messages" onClick={toBottom}>
          {newBelow > 0 ? `↓ ${newBelow} new ${newBelow === 1 ? 'message' : 'messages'}` : '↓ Latest messages'}
        </button>
      )}
      <form
        className="composer"
        onSubmit={(e) => {
          e.preventDefault();
          send();
        }}
      >
        {replying && (
          <div className="reply-bar" data-testid="reply-bar" data-reply-to={replying.seq}>
            <p id={`${composerId}-reply`}>
              Replying to {replying.sender !== null && <span className="quote-sender">{replying.sender}</span>}
              {replying.sender !== null ? ': ' : ''}
              <span className={`quote-text${replying.deleted ? ' deleted' : ''}`} dir="auto">
                {replying.text}
              </span>
            </p>
            <button
              type="button"
              className="ghost"
              aria-label="Cancel reply"
              title="Cancel reply (Escape)"
              onClick={() => {
                setReplyTo(null);
                composer.current?.focus();
              }}
            >
              ×
            </button>
          </div>
        )}
        <UploadChips uploads={uploads} onCancel={cancelUpload} />
        {uploadErrors.length > 0 && (
          <div id={`${composerId}-upload-err`} className="error composer-note upload-errors" role="alert" data-testid="upload-errors">
            {uploadErrors.map((t, i) => (
              <p key={i}>{t}</p>
            ))}
            <button type="button" className="link" onClick={() => setUploadErrors([])}>
              Dismiss
            </button>
          </div>
        )}
        <input
          ref={fileInput}
          type="file"
          multiple
          className="visually-hidden"
          tabIndex={-1}
          aria-label="Choose files to attach"
          data-testid="file-input"
          onChange={(e) => {
            addFiles(Array.from(e.target.files ?? []));
            e.target.value = '';
          }}
        />
        <button
          type="button"
          className="ghost attach"
          aria-label="Attach files"
          title={`Attach files (at most ${MAX_ATTACHMENTS}; or drop or paste them here)`}
          disabled={uploads.length >= MAX_ATTACHMENTS}
          onClick={() => fileInput.current?.click()}
        >
          <PaperclipIcon />
        </button>
        <label htmlFor={composerId} className="visually-hidden">
          Message
        </label>
        <textarea
          ref={composer}
          id={composerId}
          rows={1}
          dir="auto"
          placeholder={state.connection === 'open' ? 'Write a message' : 'Write a message (sent when back online)'}
          value={text}
          aria-invalid={bytes > MAX_CONTENT_BYTES}
          aria-describedby={describedBy || undefined}
          onChange={(e) => {
            setText(e.target.value);
            if (e.target.value) client.typing(id);
            else client.stopTyping(id);
          }}
          onBlur={() => client.stopTyping(id)}
          onKeyDown={onKey}
          onPaste={onPaste}
        />
        <button type="submit" className="primary" disabled={!canSend(text, uploads) || bytes > MAX_CONTENT_BYTES}>
          Send
        </button>
        {(sendError || bytes > MAX_CONTENT_BYTES * 0.9) && (
          <p id={`${composerId}-err`} className="error composer-note" role="alert">
            {sendError ?? `${bytes} of ${MAX_CONTENT_BYTES} bytes`}
          </p>
        )}
      </form>
    </section>
  );
}

function MessageItem({
  client,
  convoId,
  m,
  mine,
  continues,
  sender,
  tick,
  seenText,
  quote,
  highlighted,
  onJump,
  onReply,
  onChange,
  onReact,
}: {
  client: ChatClient;
  convoId: string;
  /** "Seen by …" under my latest message in a group, else "" */
  seenText: string;
  m: Message;
  mine: boolean;
  /** the same sender's as the message before, shortly after: the name is not shown again */
  continues: boolean;
  sender: string;
  tick: Tick | null;
  /** what it replies to, when it is a reply */
  quote: QuoteInfo | null;
  /** just shown from a quote */
  highlighted: boolean;
  onJump: (seq: number) => void;
  /** start a reply to this message */
  onReply: () => void;
  /** edit (content) or delete (null) this message: null when sent, or why not */
  onChange: (content: string | null) => string | null;
  /** set my reaction to this message (null removes it): null when sent, or why not */
  onReact: (emoji: string | null) => string | null;
}) {
  const [mode, setMode] = useState<'view' | 'edit' | 'confirm-delete'>('view');
  const [draft, setDraft] = useState(m.content);
  const [problem, setProblem] = useState<string | null>(null);
  const [palette, setPalette] = useState(false);
  const reactButton = useRef<HTMLButtonElement>(null);
  const editId = useId();
  const paletteId = useId();
  const react = (emoji: string | null) => setProblem(onReact(emoji));
  const myReaction = m.my_reaction ?? null;
  const act = (content: string | null) => {
    const why = onChange(content);
    setProblem(why);
    if (!why) setMode('view');
  };
  const canChange = mine && !m.deleted;
  return (
    <li
      className={`bubble ${mine ? 'mine' : 'theirs'}${continues ? ' continues' : ''}${highlighted ? ' highlight' : ''}`}
      data-seq={m.seq_no}
      data-client-msg-id={m.client_msg_id}
      data-reply-to={m.reply_to}
      tabIndex={-1}
    >
      {/* in a group the name is said to screen readers only */}
      {!mine && <span className={continues ? 'sender visually-hidden' : 'sender'}>{sender}</span>}
      {quote && <Quote q={quote} onJump={onJump} />}
      {m.deleted ? (
        <span className="content deleted">This message was deleted.</span>
      ) : mode === 'edit' ? (
        <form
          className="edit"
          onSubmit={(e) => {
            e.preventDefault();
            act(draft);
          }}
        >
          <label htmlFor={editId} className="visually-hidden">
            Edit message
          </label>
          <textarea
            id={editId}
            value={draft}
            rows={2}
            dir="auto"
            autoFocus
            onChange={(e) => setDraft(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === 'Escape') setMode('view');
              else if (e.key === 'Enter' && !e.shiftKey) {
                e.preventDefault();
                act(draft);
              }
            }}
          />
          <button type="submit" className="link">
            Save
          </button>{' '}
          <button type="button" className="link" onClick={() => setMode('view')}>
            Cancel
          </button>
        </form>
      ) : (
        // a message of files only has no text to show
        (m.content !== '' || (m.attachments ?? noAttachments).length === 0) && (
          <span className="content" dir="auto">
            <MessageText text={m.content} />
          </span>
        )
      )}
      {!m.deleted && mode !== 'edit' && <MessageAttachments client={client} convoId={convoId} attachments={m.attachments ?? noAttachments} />}
      {!m.deleted && <ReactionChips reactions={m.reactions ?? noReactions} mine={myReaction} onReact={react} fallback={reactButton} />}
      <span className="meta">
        {m.edited && !m.deleted && <span>edited</span>}
        <time dateTime={m.created_at ? new Date(m.created_at).toISOString() : undefined} title={fullTimeOf(m.created_at)}>
          {timeOf(m.created_at)}
        </time>
        {tick && <TickMark tick={tick} />}
        {!m.deleted && mode === 'view' && (
          <button type="button" className="link" aria-label="Reply to message" onClick={onReply}>
            Reply
          </button>
        )}
        {!m.deleted && mode === 'view' && (
          <button
            type="button"
            ref={reactButton}
            className="link"
            aria-label="React to message"
            aria-expanded={palette}
            aria-controls={palette ? paletteId : undefined}
            data-testid="react-button"
            onClick={() => setPalette((open) => !open)}
          >
            React
          </button>
        )}
        {canChange && mode === 'view' && (
          <>
            <button
              type="button"
              className="link"
              aria-label="Edit message"
              onClick={() => {
                setDraft(m.content);
                setProblem(null);
                setMode('edit');
              }}
            >
              Edit
            </button>
            <button type="button" className="link" aria-label="Delete message" onClick={() => setMode('confirm-delete')}>
              Delete
            </button>
          </>
        )}
        {canChange && mode === 'confirm-delete' && (
          <>
            <span>Delete for everyone?</span>
            <button type="button" className="link" onClick={() => act(null)}>
              Yes, delete
            </button>
            <button type="button" className="link" onClick={() => setMode('view')}>
              Keep
            </button>
          </>
        )}
      </span>
      {palette && !m.deleted && mode === 'view' && (
        <ReactionPalette
          id={paletteId}
          mine={myReaction}
          opener={reactButton}
          onPick={(emoji) => {
            setPalette(false);
            react(emoji);
            reactButton.current?.focus();
          }}
          onClose={(refocus) => {
            setPalette(false);
            if (refocus) reactButton.current?.focus();
          }}
        />
      )}
      {seenText && (
        <span className="seen-by" data-testid="seen-by">
          {seenText}
        </span>
      )}
      {problem && (
        <span className="error" role="alert">
          {problem}
        </span>
      )}
    </li>
  );
}

function PendingItem({
  p,
  quote,
  onJump,
  onRetry,
  onDiscard,
}: {
  p: PendingMessage;
  quote: QuoteInfo | null;
  onJump: (seq: number) => void;
  onRetry: () => void;
  onDiscard: () => void;
}) {
  const tick: Tick = p.state === 'failed' ? 'failed' : 'sending';
  return (
    <li
      className={`bubble mine pending pending-${p.state}`}
      data-client-msg-id={p.client_msg_id}
      data-pending={p.state}
      data-reply-to={p.reply_to}
    >
      {quote && <Quote q={quote} onJump={onJump} />}
      {(p.content !== '' || (p.attachments ?? noAttachments).length === 0) && (
        <span className="content" dir="auto">
          <MessageText text={p.content} />
        </span>
      )}
      <PendingAttachments attachments={p.attachments ?? noAttachments} />
      <span className="meta">
        {p.state === 'queued' && <span>Waiting for connection</span>}
        <TickMark tick={tick} />
      </span>
      {p.state === 'failed' && (
        <span className="failed">
          {p.error ?? 'Not sent.'}{' '}
          <button type="button" className="link" onClick={onRetry}>
            Retry
          </button>{' '}
          <button type="button" className="link" onClick={onDiscard}>
            Discard
          </button>
        </span>
      )}
    </li>
  );
}
