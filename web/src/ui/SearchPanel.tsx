import { useEffect, useRef, useState } from 'react';
import type { SearchHit } from '../api';
import type { ChatClient, ChatState } from '../chat';
import { previewOf } from '../attachments';
import { nameOf, snippetOf, timeOf, titleOf } from './format';
import { splitHeadline } from './headline';

/** A result's headline: the matched words as <mark>, the rest as plain text (React nodes,
 * never HTML). */
export function Headline({ text }: { text: string }) {
  return (
    <>
      {splitHeadline(text).map((p, i) => (p.marked ? <mark key={i}>{p.text}</mark> : <span key={i}>{p.text}</span>))}
    </>
  );
}

export function SearchPanel({
  client,
  state,
  q,
  onOpen,
  onBack,
}: {
  client: ChatClient;
  state: ChatState;
  q: string;
  /** opens conversation `id` at message `seq` */
  onOpen: (id: string, seq: number) => void;
  onBack: () => void;
}) {
  const [hits, setHits] = useState<SearchHit[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [loadingMore, setLoadingMore] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const list = useRef<HTMLUListElement>(null);
  /** after "More results": the index of the first new result, which gets the focus */
  const focusFrom = useRef<number | null>(null);
  const live = useRef(true);

  useEffect(() => {
    live.current = true;
    client.search(q).then(
      (page) => {
        if (!live.current) return;
        setHits(page.hits);
        setNext(page.next_cursor);
      },
      (e: unknown) => live.current && setError(e instanceof Error ? e.message : 'Search failed.'),
    );
    return () => {
      live.current = false;
    };
  }, [client, q]);

  useEffect(() => {
    const from = focusFrom.current;
    if (from === null || !hits) return;
    focusFrom.current = null;
    list.current?.querySelectorAll<HTMLButtonElement>('button.search-hit')[from]?.focus();
  }, [hits]);

  function more() {
    if (!next || loadingMore) return;
    setLoadingMore(true);
    setError(null);
    client.search(q, next).then(
      (page) => {
        if (!live.current) return;
        setLoadingMore(false);
        setHits((old) => {
          const have = old ?? [];
          const seen = new Set(have.map((h) => `${h.message.convo_id}\n${h.message.seq_no}`));
          const added = page.hits.filter((h) => !seen.has(`${h.message.convo_id}\n${h.message.seq_no}`));
          focusFrom.current = added.length > 0 ? have.length : null;
          return [...have, ...added];
        });
        setNext(page.next_cursor);
      },
      (e: unknown) => {
        if (!live.current) return;
        setLoadingMore(false);
        setError(e instanceof Error ? e.message : 'Search failed.');
      },
    );
  }

  const convTitle = (id: string) => {
    const c = state.conversations.find((x) => x.id === id);
    return c ? titleOf(c, state.names, state.me.user_id) : 'a conversation';
  };

  return (
    <section className="panel" aria-labelledby="search-title">
      <header className="convo-header">
        <button type="button" className="ghost back" onClick={onBack} aria-label="Back to conversations">
          ←
        </button>
        <h2 id="search-title">Results for “{q}”</h2>
      </header>
      <div className="search-results">
        <div aria-live="polite">
          {error && (
            <p className="error pad" role="alert">
              {error}
            </p>
          )}
          {!error && hits === null && <p className="muted pad">Searching…</p>}
          {hits?.length === 0 && <p className="muted pad">No messages found.</p>}
          {hits && hits.length > 0 && (
            <p className="visually-hidden" data-testid="search-count">
              {hits.length} {hits.length === 1 ? 'result' : 'results'}
              {next ? ' so far' : ''}
            </p>
          )}
        </div>
        {hits && hits.length > 0 && (
          <ul className="convo-list" data-testid="search-results" ref={list}>
            {hits.map(({ message: m, headline }) => (
              <li key={`${m.convo_id}:${m.seq_no}`}>
                <button
                  type="button"
                  className="convo-item search-hit"
                  data-convo-id={m.convo_id}
                  data-seq={m.seq_no}
                  onClick={() => onOpen(m.convo_id, m.seq_no)}
                >
                  <span className="convo-main">
                    <span className="convo-title">
                      {nameOf(state.names, m.sender_id)} in {convTitle(m.convo_id)}
                    </span>
                    <span className="convo-last hit-text" dir="auto" data-testid="headline">
                      {headline ? <Headline text={headline} /> : snippetOf(previewOf(m), 160)}
                    </span>
                  </span>
                  <span className="convo-time">{timeOf(m.created_at)}</span>
                </button>
              </li>
            ))}
          </ul>
        )}
        {hits && hits.length > 0 && next && (
          <button type="button" className="ghost center more-results" onClick={more} disabled={loadingMore} data-testid="more-results">
            {loadingMore ? 'Loading more results…' : 'More results'}
          </button>
        )}
      </div>
    </section>
  );
}
