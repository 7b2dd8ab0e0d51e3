import { useEffect, useState } from 'react';
import type { ChatClient, ChatState } from '../chat';
import type { Message } from '../protocol';
import { nameOf, timeOf, titleOf } from './format';

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
  onOpen: (id: string) => void;
  onBack: () => void;
}) {
  const [results, setResults] = useState<Message[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    client.search(q).then(
      (r) => live && setResults(r),
      (e: unknown) => live && setError(e instanceof Error ? e.message : 'Search failed.'),
    );
    return () => {
      live = false;
    };
  }, [client, q]);

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
      <div className="search-results" aria-live="polite">
        {error && (
          <p className="error pad" role="alert">
            {error}
          </p>
        )}
        {!error && results === null && <p className="muted pad">Searching…</p>}
        {results?.length === 0 && <p className="muted pad">No messages found.</p>}
        {results && results.length > 0 && (
          <ul className="convo-list" data-testid="search-results">
            {results.map((m) => (
              <li key={`${m.convo_id}:${m.seq_no}`}>
                <button type="button" className="convo-item" onClick={() => onOpen(m.convo_id)}>
                  <span className="convo-main">
                    <span className="convo-title">
                      {nameOf(state.names, m.sender_id)} in {convTitle(m.convo_id)}
                    </span>
                    <span className="convo-last">{m.content}</span>
                  </span>
                  <span className="convo-time">{timeOf(m.created_at)}</span>
                </button>
              </li>
            ))}
          </ul>
        )}
      </div>
    </section>
  );
}
