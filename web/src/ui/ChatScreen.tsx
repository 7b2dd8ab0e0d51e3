import { useEffect, useMemo, useRef, useState } from 'react';
import type { Api, Session } from '../api';
import { ChatClient } from '../chat';
import { parseRoute, routePath } from '../route';
import { ConversationList } from './ConversationList';
import { ConversationView } from './ConversationView';
import { NewConversation } from './NewConversation';
import { SearchPanel } from './SearchPanel';
import { useAttention } from './useAttention';
import { useChat } from './useChat';
import { usePush } from './usePush';
import { useRoute } from './useRoute';

const connectionText: Record<string, string> = {
  connecting: 'Connecting…',
  open: 'Connected',
  offline: 'Offline',
  closed: 'Disconnected',
};

export function ChatScreen({ api, session }: { api: Api; session: Session }) {
  const client = useMemo(() => new ChatClient(api, session), [api, session.user_id]); // eslint-disable-line react-hooks/exhaustive-deps
  useEffect(() => {
    client.start();
    return () => client.stop();
  }, [client]);
  const state = useChat(client);
  // what is shown follows the address: /c/<id>[/m/<seq>], /find?q=, /new, or / (the list)
  const [route, navigate] = useRoute();
  const routeKey = routePath(route);
  useEffect(() => {
    if (route.kind === 'convo') client.open(route.id, route.seq);
    else client.open(null);
  }, [client, routeKey]); // eslint-disable-line react-hooks/exhaustive-deps
  // the client closed the conversation on the page (I left it, or was removed): the list
  const shownConvo = useRef<string | null>(null);
  useEffect(() => {
    if (shownConvo.current !== null && state.openConvo === null && route.kind === 'convo' && route.id === shownConvo.current) {
      navigate({ kind: 'home' }, true);
    }
    shownConvo.current = state.openConvo;
  }, [state.openConvo]); // eslint-disable-line react-hooks/exhaustive-deps
  const attention = useAttention(client, state, (id) => navigate({ kind: 'convo', id }));
  // Web Push while no tab is connected; a clicked push notification opens its place here
  const push = usePush(api, session.user_id, attention.setting, (path) => {
    const u = new URL(path, window.location.origin);
    navigate(parseRoute(u.pathname, u.search));
  });
  const [copied, setCopied] = useState(false);
  /** counts the searches asked for: the same words asked again search again */
  const [searches, setSearches] = useState(0);
  const [editingName, setEditingName] = useState(false);
  const [nameDraft, setNameDraft] = useState('');
  const [nameError, setNameError] = useState<string | null>(null);

  function openConvo(id: string) {
    navigate({ kind: 'convo', id });
  }

  function back() {
    navigate({ kind: 'home' });
  }

  const showMain = route.kind !== 'home' && (route.kind !== 'convo' || state.openConvo !== null);

  return (
    <div className={`app ${showMain ? 'show-main' : 'show-list'}`}>
      <a className="skip" href="#main">
        Skip to conversation
      </a>
      <header className="topbar">
        <span className="brand">kchat</span>
        <span className={`conn conn-${state.connection}`} role="status" aria-live="polite" data-testid="connection">
          <span className="dot" aria-hidden="true" />
          {connectionText[state.connection]}
          {state.connection !== 'open' && state.connectionDetail ? ` (${state.connectionDetail})` : ''}
        </span>
        <span className="me">
          {editingName ? (
            <form
              className="me-edit"
              onSubmit={(e) => {
                e.preventDefault();
                void client.setDisplayName(nameDraft).then((why) => {
                  setNameError(why);
                  if (!why) setEditingName(false);
                });
              }}
            >
              <label>
                <span className="visually-hidden">Your display name</span>
                <input value={nameDraft} maxLength={128} autoFocus onChange={(e) => setNameDraft(e.target.value)} placeholder="Your name" />
              </label>
              <button type="submit" className="link">
                Save
              </button>
              <button type="button" className="link" onClick={() => setEditingName(false)}>
                Cancel
              </button>
              {nameError && (
                <span className="error" role="alert">
                  {nameError}
                </span>
              )}
            </form>
          ) : (
            <button
              type="button"
              className="link me-name"
              data-testid="me-name"
              title="Set your display name"
              onClick={() => {
                setNameDraft(state.me.display_name ?? '');
                setNameError(null);
                setEditingName(true);
              }}
            >
              {state.me.display_name ? `${state.me.display_name} (${state.me.username})` : state.me.username}
              <span className="visually-hidden">: set your display name</span>
            </button>
          )}
          <button
            type="button"
            className="link me-id"
            title="Copy your user id: others can start a conversation with it"
            aria-label={`Your user id ${state.me.user_id}; copy it`}
            data-testid="my-user-id"
            data-user-id={state.me.user_id}
            onClick={() => {
              void navigator.clipboard?.writeText(state.me.user_id).then(
                () => setCopied(true),
                () => setCopied(false),
              );
              setTimeout(() => setCopied(false), 1500);
            }}
          >
            {copied ? 'copied' : state.me.user_id}
          </button>
          {attention.setting === 'ask' && (
            <button type="button" className="ghost notify" data-testid="notifications" onClick={attention.enable}>
              <span className="wide-only">Enable desktop notifications</span>
              <span className="narrow-only">Enable notifications</span>
            </button>
          )}
          {(attention.setting === 'on' || attention.setting === 'off') && (
            <button
              type="button"
              className="ghost notify notify-toggle"
              data-testid="notifications"
              aria-pressed={attention.setting === 'on'}
              title={attention.setting === 'on' ? 'Turn desktop notifications off' : 'Turn desktop notifications on'}
              onClick={attention.toggle}
            >
              <span className="wide-only">Desktop notifications</span>
              <span className="narrow-only">Notifications</span>
              <span aria-hidden="true">: {attention.setting}</span>
            </button>
          )}
          <button
            type="button"
            className="ghost"
            onClick={() => {
              const unsent = Object.values(state.logs).reduce((n, l) => n + l.pending.length, 0);
              if (unsent > 0 && !window.confirm(`${unsent} message(s) are not sent yet and will be lost. Log out?`)) return;
              push.logout();
              client.forget();
              api.logout();
            }}
          >
            Log out
          </button>
        </span>
      </header>
      {state.notices.length > 0 && (
        <div className="notices" role="alert">
          {state.notices.map((n) => (
            <p key={n.id} className={`notice notice-${n.kind}`}>
              {n.text}
              <button type="button" className="ghost" aria-label="Dismiss" onClick={() => client.dismissNotice(n.id)}>
                ×
              </button>
            </p>
          ))}
        </div>
      )}
      <nav className="sidebar" aria-label="Conversations">
        <form
          className="search"
          role="search"
          onSubmit={(e) => {
            e.preventDefault();
            const q = new FormData(e.currentTarget).get('q');
            if (typeof q === 'string' && q.trim()) {
              setSearches((n) => n + 1);
              navigate({ kind: 'search', q: q.trim().slice(0, 256) });
            }
          }}
        >
          <label className="visually-hidden" htmlFor="search-q">
            Search messages
          </label>
          <input id="search-q" name="q" type="search" placeholder="Search messages" maxLength={256} />
          <button type="submit" className="ghost">
            Search
          </button>
        </form>
        <button
          type="button"
          className="primary new-convo"
          onClick={() => navigate({ kind: 'new' })}
        >
          New conversation
        </button>
        <ConversationList state={state} onOpen={openConvo} />
      </nav>
      <main id="main" className="main" tabIndex={-1}>
        {route.kind === 'convo' && state.openConvo && (
          <ConversationView
            key={`${state.openConvo}\n${state.openSeq ?? ''}`}
            client={client}
            state={state}
            id={state.openConvo}
            target={state.openSeq}
            onBack={back}
            onLatest={() => {
              const id = state.openConvo;
              if (id) navigate({ kind: 'convo', id }, true);
            }}
          />
        )}
        {route.kind === 'new' && <NewConversation client={client} onCreated={openConvo} onCancel={back} />}
        {route.kind === 'search' && (
          <SearchPanel
            key={`${route.q}\n${searches}`}
            client={client}
            state={state}
            q={route.q}
            onOpen={(id, seq) => navigate({ kind: 'convo', id, seq })}
            onBack={back}
          />
        )}
        {!showMain && (
          <div className="empty">
            <p>Pick a conversation, or start a new one.</p>
          </div>
        )}
      </main>
    </div>
  );
}
