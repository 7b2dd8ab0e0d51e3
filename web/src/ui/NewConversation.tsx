import { useEffect, useId, useRef, useState, type FormEvent, type KeyboardEvent } from 'react';
import type { Person } from '../api';
import type { ChatClient } from '../chat';

/** The entry being typed: what follows the last comma or semicolon of the People field (it
 * may hold spaces: display names do). */
function lastEntry(value: string): string {
  const parts = value.split(/[,;]/);
  return (parts[parts.length - 1] ?? '').trim().replace(/^@/, '');
}

export function NewConversation({
  client,
  onCreated,
  onCancel,
}: {
  client: ChatClient;
  onCreated: (id: string) => void;
  onCancel: () => void;
}) {
  const [title, setTitle] = useState('');
  const [members, setMembers] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [suggestions, setSuggestions] = useState<Person[]>([]);
  const [active, setActive] = useState(-1);
  const hintId = useId();
  const listId = useId();
  const asked = useRef(0);

  // Suggestions for the entry being typed, a moment after the typing stops; an answer that
  // arrives after a newer question is dropped.
  const typing = lastEntry(members);
  useEffect(() => {
    if (!typing) {
      setSuggestions([]);
      return;
    }
    const n = ++asked.current;
    const t = setTimeout(() => {
      client
        .findPeople(typing)
        .then((found) => {
          if (n !== asked.current) return;
          const me = client.getState().me.user_id;
          setSuggestions(found.filter((p) => p.user_id !== me));
          setActive(-1);
        })
        .catch(() => {
          if (n === asked.current) setSuggestions([]);
        });
    }, 200);
    return () => clearTimeout(t);
  }, [typing, client]);

  function choose(p: Person) {
    const cut = members.search(/[^,;]*$/); // where the entry being typed begins
    const lead = cut > 0 ? ' ' : '';
    setMembers(`${members.slice(0, cut)}${lead}${p.username}, `);
    asked.current++;
    setSuggestions([]);
    setActive(-1);
  }

  function onPeopleKey(e: KeyboardEvent<HTMLInputElement>) {
    if (!suggestions.length) return;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      const step = e.key === 'ArrowDown' ? 1 : -1;
      setActive((i) => (i + step + suggestions.length) % suggestions.length);
    } else if (e.key === 'Enter' && active >= 0 && suggestions[active]) {
      e.preventDefault();
      choose(suggestions[active]);
    } else if (e.key === 'Escape') {
      e.preventDefault();
      asked.current++;
      setSuggestions([]);
      setActive(-1);
    }
  }

  async function submit(e: FormEvent) {
    e.preventDefault();
    const entries = members.split(/[\s,;]+/).filter(Boolean);
    if (entries.length === 0) {
      setError('Add at least one other person.');
      return;
    }
    if (entries.length > 100) {
      setError('Add at most 100 people at once.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      onCreated(await client.createConversation(title, entries));
    } catch (err) {
      setError(err instanceof Error ? err.message : 'Could not start the conversation.');
      setBusy(false);
    }
  }

  return (
    <section className="panel" aria-labelledby="new-convo-title">
      <header className="convo-header">
        <button type="button" className="ghost back" onClick={onCancel} aria-label="Back to conversations">
          ←
        </button>
        <h2 id="new-convo-title">New conversation</h2>
      </header>
      <form className="form" onSubmit={submit}>
        <label>
          Title (optional)
          <input name="title" maxLength={200} value={title} onChange={(e) => setTitle(e.target.value)} autoFocus />
        </label>
        <label>
          People
          <input
            name="members"
            required
            maxLength={20000}
            value={members}
            onChange={(e) => setMembers(e.target.value)}
            onKeyDown={onPeopleKey}
            autoComplete="off"
            role="combobox"
            aria-autocomplete="list"
            aria-expanded={suggestions.length > 0}
            aria-controls={listId}
            aria-activedescendant={active >= 0 ? `${listId}-${active}` : undefined}
            aria-describedby={hintId}
          />
        </label>
        <ul id={listId} role="listbox" aria-label="Suggestions" className="suggestions" hidden={!suggestions.length} data-testid="people-suggestions">
          {suggestions.map((p, i) => (
            <li
              key={p.user_id}
              id={`${listId}-${i}`}
              role="option"
              aria-selected={i === active}
              data-user-id={p.user_id}
              onMouseDown={(e) => e.preventDefault()}
              onClick={() => choose(p)}
            >
              <strong>{p.username}</strong>
              {p.display_name && <span className="muted"> {p.display_name}</span>}
            </li>
          ))}
        </ul>
        <p id={hintId} className="muted">
          Usernames, separated by commas (a user id works too); names that start with what you
          type are suggested. One person and no title starts your direct conversation with them.
          You are{' '}
          <strong data-testid="my-name-hint">{client.getState().me.username}</strong>, id{' '}
          <code data-testid="my-id-hint">{client.getState().me.user_id}</code>.
        </p>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <div className="row">
          <button type="submit" className="primary" disabled={busy}>
            {busy ? 'Starting…' : 'Start conversation'}
          </button>
          <button type="button" className="ghost" onClick={onCancel}>
            Cancel
          </button>
        </div>
      </form>
    </section>
  );
}
