import { useEffect, useId, useRef, useState, type KeyboardEvent } from 'react';
import type { Person } from '../api';
import type { ChatClient } from '../chat';

/** The entry being typed: what follows the last comma or semicolon of the field (it may hold
 * spaces: display names do). */
function lastEntry(value: string): string {
  const parts = value.split(/[,;]/);
  return (parts[parts.length - 1] ?? '').trim().replace(/^@/, '');
}

/** The entries of a people field: usernames or user ids, separated by commas, semicolons or
 * spaces. */
export function peopleEntries(value: string): string[] {
  return value.split(/[\s,;]+/).filter(Boolean);
}

/**
 * The people picker: a text field of usernames separated by commas, a combobox that suggests
 * people whose username or display name starts with the entry being typed (arrows to move,
 * Enter to take one, Escape to close the list).
 */
export function PeoplePicker({
  client,
  label,
  value,
  onChange,
  exclude = [],
  describedBy,
  name = 'members',
  required = false,
  autoFocus = false,
}: {
  client: ChatClient;
  label: string;
  value: string;
  onChange: (value: string) => void;
  /** user ids not to suggest (me, the members already there) */
  exclude?: readonly string[];
  describedBy?: string;
  name?: string;
  required?: boolean;
  autoFocus?: boolean;
}) {
  const [suggestions, setSuggestions] = useState<Person[]>([]);
  const [active, setActive] = useState(-1);
  const listId = useId();
  const asked = useRef(0);
  const excluded = useRef(exclude);
  excluded.current = exclude;

  // Suggestions for the entry being typed, a moment after the typing stops; an answer that
  // arrives after a newer question is dropped.
  const typing = lastEntry(value);
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
          setSuggestions(found.filter((p) => p.user_id !== me && !excluded.current.includes(p.user_id)));
          setActive(-1);
        })
        .catch(() => {
          if (n === asked.current) setSuggestions([]);
        });
    }, 200);
    return () => clearTimeout(t);
  }, [typing, client]);

  function choose(p: Person) {
    const cut = value.search(/[^,;]*$/); // where the entry being typed begins
    const lead = cut > 0 ? ' ' : '';
    onChange(`${value.slice(0, cut)}${lead}${p.username}, `);
    asked.current++;
    setSuggestions([]);
    setActive(-1);
  }

  function onKey(e: KeyboardEvent<HTMLInputElement>) {
    if (!suggestions.length) return;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      const step = e.key === 'ArrowDown' ? 1 : -1;
      setActive((i) => (i + step + suggestions.length) % suggestions.length);
    } else if (e.key === 'Enter' && active >= 0 && suggestions[active]) {
      e.preventDefault();
      choose(suggestions[active]);
    } else if (e.key === 'Escape') {
      // closes the list only (not a dialog around it)
      e.preventDefault();
      e.stopPropagation();
      asked.current++;
      setSuggestions([]);
      setActive(-1);
    }
  }

  return (
    <>
      <label>
        {label}
        <input
          name={name}
          required={required}
          maxLength={20000}
          value={value}
          onChange={(e) => onChange(e.target.value)}
          onKeyDown={onKey}
          autoComplete="off"
          autoFocus={autoFocus}
          role="combobox"
          aria-autocomplete="list"
          aria-expanded={suggestions.length > 0}
          aria-controls={listId}
          aria-activedescendant={active >= 0 ? `${listId}-${active}` : undefined}
          aria-describedby={describedBy}
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
    </>
  );
}
