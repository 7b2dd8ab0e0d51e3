import { useId, useState, type FormEvent } from 'react';
import type { ChatClient } from '../chat';
import { PeoplePicker, peopleEntries } from './PeoplePicker';

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
  const hintId = useId();

  async function submit(e: FormEvent) {
    e.preventDefault();
    const entries = peopleEntries(members);
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
        <PeoplePicker client={client} label="People" value={members} onChange={setMembers} describedBy={hintId} required />
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
