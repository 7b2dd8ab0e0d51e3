import { useId, useLayoutEffect, useRef, useState, type FormEvent } from 'react';
import type { ChatClient, ChatState } from '../chat';
import { MAX_TITLE_BYTES, MAX_TOPIC_BYTES, utf8Bytes, type Conversation, type Member, type Role } from '../protocol';
import { abilitiesOf } from '../store';
import { lastSeenText, nameOf, titleOf } from './format';
import { PeoplePicker, peopleEntries } from './PeoplePicker';

const roleAction: Record<Role, string> = { owner: 'Make owner', admin: 'Make admin', member: 'Make member' };
const roleBadge: Record<Role, string> = { owner: 'Owner', admin: 'Admin', member: '' };
const roleOrder: Record<Role, number> = { owner: 0, admin: 1, member: 2 };

/**
 * The open conversation's details, in a modal dialog: its title and topic (owners and admins
 * edit them), its members with their roles and presence, and what my role lets me do to them
 * (add people, remove, change roles), and leaving. What my role does not allow is not shown;
 * the server's refusals are shown here. Escape or the close button closes it.
 */
export function MemberPanel({ client, state, conv, onClose }: { client: ChatClient; state: ChatState; conv: Conversation; onClose: () => void }) {
  const me = state.me.user_id;
  const dialog = useRef<HTMLDialogElement>(null);
  const membersHeading = useRef<HTMLHeadingElement>(null);
  const headingId = useId();
  const membersId = useId();
  const [titleDraft, setTitleDraft] = useState<string | null>(null);
  const [topicDraft, setTopicDraft] = useState<string | null>(null);
  const [people, setPeople] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState('');
  const [confirmRemove, setConfirmRemove] = useState<string | null>(null);
  const [confirmLeave, setConfirmLeave] = useState(false);

  // modal while mounted; closed before it leaves the page, so the browser gives the focus back
  useLayoutEffect(() => {
    const d = dialog.current;
    if (d && !d.open) d.showModal();
    return () => d?.close();
  }, []);

  const direct = conv.kind === 'direct';
  const can = abilitiesOf(conv, me);
  const shownTitle = titleOf(conv, state.names, me);
  const name = (m: Member) => m.username ?? nameOf(state.names, m.user_id);
  const members = (direct ? conv.members.filter((m) => m.user_id !== me) : conv.members)
    .slice()
    .sort((a, b) => (a.user_id === me ? -1 : b.user_id === me ? 1 : 0) || roleOrder[a.role ?? 'member'] - roleOrder[b.role ?? 'member'] || name(a).localeCompare(name(b)));
  const owners = conv.members.filter((m) => m.role === 'owner').length;
  const iAmLastOwner = !direct && owners === 1 && conv.members.find((m) => m.user_id === me)?.role === 'owner' && conv.members.length > 1;

  /** Runs one change: the panel is busy meanwhile, and shows the server's refusal or `done`. */
  async function run(change: () => Promise<string | null>, done: string): Promise<boolean> {
    setBusy(true);
    setError(null);
    setStatus('');
    const why = await change();
    setBusy(false);
    if (why) {
      setError(why);
      return false;
    }
    setStatus(done);
    return true;
  }

  const title = titleDraft ?? conv.title;
  const topic = topicDraft ?? conv.topic;
  const titleChanged = titleDraft !== null && titleDraft.trim() !== conv.title;
  const topicChanged = topicDraft !== null && topicDraft.trim() !== conv.topic;

  async function saveInfo(e: FormEvent) {
    e.preventDefault();
    const change: { title?: string; topic?: string } = {};
    if (titleChanged) {
      const t = title.trim();
      if (!t) return setError('A title cannot be empty.');
      if (utf8Bytes(t) > MAX_TITLE_BYTES) return setError(`A title has at most ${MAX_TITLE_BYTES} bytes.`);
      change.title = t;
    }
    if (topicChanged) {
      const t = topic.trim();
      if (utf8Bytes(t) > MAX_TOPIC_BYTES) return setError(`A topic has at most ${MAX_TOPIC_BYTES} bytes.`);
      change.topic = t;
    }
    if (change.title === undefined && change.topic === undefined) return;
    if (await run(() => client.updateConversationInfo(conv.id, change), 'Saved.')) {
      setTitleDraft(null);
      setTopicDraft(null);
    }
  }

  async function clearTopic() {
    if (await run(() => client.updateConversationInfo(conv.id, { topic: '' }), 'The topic is cleared.')) setTopicDraft(null);
  }

  async function add(e: FormEvent) {
    e.preventDefault();
    const entries = peopleEntries(people);
    if (entries.length === 0) return setError('Name at least one person to add.');
    if (entries.length > 100) return setError('Add at most 100 people at once.');
    if (await run(() => client.addPeople(conv.id, entries), entries.length === 1 ? 'Added.' : `Added ${entries.length} people.`)) setPeople('');
  }

  async function remove(m: Member) {
    setConfirmRemove(null);
    if (await run(() => client.removeMember(conv.id, m.user_id), `${name(m)} is removed.`)) membersHeading.current?.focus();
  }

  async function setRole(m: Member, role: Role) {
    await run(() => client.setRole(conv.id, m.user_id, role), `${name(m)} is ${role === 'member' ? 'a member' : `an ${role}`} now.`);
  }

  return (
    <dialog
      ref={dialog}
      className="sheet"
      aria-labelledby={headingId}
      data-testid="member-panel"
      onCancel={(e) => {
        e.preventDefault(); // React unmounts it
        onClose();
      }}
      onClose={onClose}
    >
      <header className="sheet-header">
        <h2 id={headingId}>Conversation details</h2>
        <button type="button" className="ghost" onClick={onClose} aria-label="Close details">
          ×
        </button>
      </header>
      <div className="sheet-body">
        {error && (
          <p className="error" role="alert" data-testid="panel-error">
            {error}
          </p>
        )}
        <p className="info panel-status" role="status" data-testid="panel-status">
          {status}
        </p>

        {!direct && (
          <section className="sheet-section" aria-label="About">
            {can.edit ? (
              <form className="info-form" onSubmit={saveInfo}>
                <label>
                  Title
                  <input value={title} placeholder={shownTitle} onChange={(e) => setTitleDraft(e.target.value)} disabled={busy} />
                </label>
                <label>
                  Topic
                  <input value={topic} placeholder="No topic" onChange={(e) => setTopicDraft(e.target.value)} disabled={busy} />
                </label>
                <div className="row">
                  <button type="submit" className="primary" disabled={busy || (!titleChanged && !topicChanged)}>
                    Save
                  </button>
                  {conv.topic && (
                    <button type="button" className="ghost" disabled={busy} onClick={() => void clearTopic()}>
                      Clear topic
                    </button>
                  )}
                </div>
              </form>
            ) : (
              <dl className="about">
                <dt>Title</dt>
                <dd data-testid="panel-title">{shownTitle}</dd>
                <dt>Topic</dt>
                <dd data-testid="panel-topic">{conv.topic || <span className="muted">No topic</span>}</dd>
              </dl>
            )}
          </section>
        )}

        <section className="sheet-section" aria-labelledby={membersId}>
          <h3 id={membersId} ref={membersHeading} tabIndex={-1}>
            {direct ? 'With' : `Members (${conv.members.length})`}
          </h3>
          <ul className="member-list" data-testid="member-list">
            {members.map((m) => {
              const p = state.presence[m.user_id];
              const mine = m.user_id === me;
              const role = m.role ?? 'member';
              const online = mine ? state.connection === 'open' : Boolean(p?.online);
              const roles = can.rolesFor(m.user_id);
              const who = name(m);
              return (
                <li key={m.user_id} className="member" data-user-id={m.user_id} data-role={role} data-online={online ? 'true' : 'false'}>
                  <span className="member-who">
                    <span className={`presence-dot${online ? ' online' : ''}`} aria-hidden="true" />
                    <span className="member-name">
                      {who}
                      {mine && ' (you)'}
                    </span>
                    {!direct && roleBadge[role] && <span className={`role-badge role-${role}`}>{roleBadge[role]}</span>}
                    <span className="muted member-presence">{mine ? '' : p ? (p.online ? 'online' : lastSeenText(p.last_seen)) : ''}</span>
                  </span>
                  {confirmRemove === m.user_id ? (
                    <span className="member-actions">
                      <span>Remove {who}?</span>
                      <button type="button" className="link danger" autoFocus disabled={busy} onClick={() => void remove(m)}>
                        Yes, remove
                      </button>
                      <button type="button" className="link" onClick={() => setConfirmRemove(null)}>
                        Cancel
                      </button>
                    </span>
                  ) : (
                    (roles.length > 0 || can.remove(m.user_id)) && (
                      <span className="member-actions">
                        {roles.map((r) => (
                          <button key={r} type="button" className="link" disabled={busy} onClick={() => void setRole(m, r)}>
                            {roleAction[r]}
                            <span className="visually-hidden"> ({who})</span>
                          </button>
                        ))}
                        {can.remove(m.user_id) && (
                          <button type="button" className="link danger" disabled={busy} onClick={() => setConfirmRemove(m.user_id)}>
                            Remove
                            <span className="visually-hidden"> ({who})</span>
                          </button>
                        )}
                      </span>
                    )
                  )}
                </li>
              );
            })}
          </ul>
          {direct && <p className="muted">A direct conversation is just the two of you: its members never change.</p>}
        </section>

        {can.add && (
          <section className="sheet-section" aria-label="Add people">
            <form className="info-form" onSubmit={add}>
              <PeoplePicker
                client={client}
                label="Add people"
                name="add-people"
                value={people}
                onChange={setPeople}
                exclude={conv.members.map((m) => m.user_id)}
              />
              <div className="row">
                <button type="submit" className="primary" disabled={busy || !people.trim()}>
                  Add
                </button>
              </div>
            </form>
          </section>
        )}

        {can.leave && (
          <section className="sheet-section" aria-label="Leave">
            {confirmLeave ? (
              <div className="confirm">
                <p>
                  Leave {`“${shownTitle}”`}? You will get no more of its messages; an owner or admin can add you again.
                  {iAmLastOwner && ' You are its only owner: another member becomes the owner.'}
                </p>
                <div className="row">
                  <button
                    type="button"
                    className="primary danger"
                    autoFocus
                    disabled={busy}
                    onClick={() => void run(() => client.removeMember(conv.id, me), '')}
                  >
                    Yes, leave
                  </button>
                  <button type="button" className="ghost" onClick={() => setConfirmLeave(false)}>
                    Cancel
                  </button>
                </div>
              </div>
            ) : (
              <button type="button" className="ghost danger" disabled={busy} onClick={() => setConfirmLeave(true)}>
                Leave conversation
              </button>
            )}
          </section>
        )}
      </div>
    </dialog>
  );
}
