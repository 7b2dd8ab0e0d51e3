import { previewOf } from '../attachments';
import type { ChatState } from '../chat';
import { isMuted } from '../protocol';
import { nameOf, timeOf, titleOf } from './format';

export function ConversationList({ state, onOpen }: { state: ChatState; onOpen: (id: string) => void }) {
  const me = state.me.user_id;
  if (state.listLoading && state.conversations.length === 0) {
    return <p className="muted pad">Loading conversations…</p>;
  }
  return (
    <>
      {state.listError && (
        <p className="error pad" role="alert">
          Could not load your conversations: {state.listError}
        </p>
      )}
      {state.conversations.length === 0 && !state.listError ? (
        <p className="muted pad">No conversations yet.</p>
      ) : (
        <ul className="convo-list" data-testid="conversation-list">
          {state.conversations.map((c) => {
            const title = titleOf(c, state.names, me);
            const others = c.members.filter((m) => m.user_id !== me);
            const online = others.some((m) => state.presence[m.user_id]?.online);
            const last = c.last_message;
            const lastText = last
              ? `${last.sender_id === me ? 'You' : nameOf(state.names, last.sender_id)}: ${previewOf(last)}`
              : 'No messages yet';
            const active = c.id === state.openConvo;
            const muted = isMuted(c);
            return (
              <li key={c.id}>
                <button
                  type="button"
                  className={`convo-item${active ? ' active' : ''}`}
                  aria-current={active ? 'true' : undefined}
                  onClick={() => onOpen(c.id)}
                  data-convo-id={c.id}
                  data-muted={muted ? 'true' : undefined}
                >
                  <span className={`presence-dot${online ? ' online' : ''}`} aria-hidden="true" />
                  <span className="convo-main">
                    <span className="convo-title" dir="auto">
                      {title}
                    </span>
                    <span className="convo-last" dir="auto">
                      {lastText}
                    </span>
                  </span>
                  <span className="convo-meta">
                    <span className="convo-time">{timeOf(c.last_activity)}</span>
                    {muted && (
                      <span className="muted-icon" data-testid="muted" title="Muted">
                        <MutedIcon />
                        <span className="visually-hidden">, muted</span>
                      </span>
                    )}
                    {c.unread > 0 && (
                      <span className={`badge${muted ? ' badge-muted' : ''}`} data-testid="unread">
                        {c.unread > 99 ? '99+' : c.unread}
                        <span className="visually-hidden"> unread</span>
                      </span>
                    )}
                  </span>
                  <span className="visually-hidden">{online ? ', someone is online' : ''}</span>
                </button>
              </li>
            );
          })}
        </ul>
      )}
    </>
  );
}

/** A bell struck through (drawn, so that it does not depend on an emoji font). */
function MutedIcon() {
  return (
    <svg className="muted-svg" width="14" height="14" viewBox="0 0 16 16" aria-hidden="true" focusable="false">
      <path
        d="M8 2a4 4 0 0 0-4 4v3l-1.5 2h11L12 9V6a4 4 0 0 0-4-4zM6.5 13a1.5 1.5 0 0 0 3 0"
        fill="none"
        stroke="currentColor"
        strokeWidth="1.4"
        strokeLinejoin="round"
      />
      <path d="M2 2l12 12" stroke="currentColor" strokeWidth="1.6" strokeLinecap="round" />
    </svg>
  );
}
