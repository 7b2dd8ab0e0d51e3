import { useId, useRef, useState } from 'react';
import { MUTE_CHOICES } from '../attention';
import type { ChatClient } from '../chat';
import { isMuted, type Conversation } from '../protocol';
import { muteText } from './format';

/** The conversation header's mute control: Mute opens the choice of how long (1 hour, 8
 * hours, a week, until unmuted: `PUT /conversations/{id}/mute`); a muted conversation shows
 * how long it stays muted, and Unmute (`DELETE`). A muted conversation raises no desktop
 * notification and is not counted in the tab's title. */
export function MuteMenu({ client, conv }: { client: ChatClient; conv: Conversation }) {
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const button = useRef<HTMLButtonElement>(null);
  const menuId = useId();
  const muted = isMuted(conv);

  async function choose(forS: number | null | false) {
    if (busy) return;
    setBusy(true);
    const why = await client.setMute(conv.id, forS);
    setBusy(false);
    setError(why);
    if (!why) {
      setOpen(false);
      button.current?.focus();
    }
  }

  return (
    <div
      className="mute"
      onKeyDown={(e) => {
        if (e.key === 'Escape' && open) {
          e.stopPropagation();
          setOpen(false);
          button.current?.focus();
        }
      }}
    >
      <button
        type="button"
        ref={button}
        className="ghost mute-button"
        data-testid="mute-button"
        data-muted={muted ? 'true' : 'false'}
        aria-busy={busy || undefined}
        aria-expanded={muted ? undefined : open}
        aria-controls={!muted && open ? menuId : undefined}
        onClick={() => (muted ? void choose(false) : setOpen((o) => !o))}
      >
        {muted ? 'Unmute' : 'Mute'}
      </button>
      {muted && (
        <span className="mute-state" data-testid="mute-state">
          {muteText(conv.muted_until ?? null)}
        </span>
      )}
      {open && !muted && (
        <div id={menuId} className="mute-menu" role="group" aria-label="Mute this conversation">
          {MUTE_CHOICES.map((c) => (
            <button key={c.label} type="button" className="ghost" disabled={busy} onClick={() => void choose(c.forS)}>
              {c.label}
            </button>
          ))}
        </div>
      )}
      {error && (
        <span className="error mute-error" role="alert">
          {error}
        </span>
      )}
    </div>
  );
}
