// Reactions on a message: the chips under it ("👍 2", mine pressed) and the palette the
// message's React action opens. One reaction per member and message: choosing another
// replaces mine, choosing mine again removes it. What is shown comes from the server (a
// history page, then message.reaction frames): the client never counts.
import { useEffect, useLayoutEffect, useRef, type KeyboardEvent, type RefObject } from 'react';
import { REACTIONS, type Reaction } from '../protocol';

/** "👍 2 people, including you": a chip's accessible name. */
export function chipLabel(r: Reaction, mine: boolean): string {
  const people = `${r.count} ${r.count === 1 ? 'person' : 'people'}`;
  if (!mine) return `${r.emoji} ${people}`;
  return r.count === 1 ? `${r.emoji} ${people}: you` : `${r.emoji} ${people}, including you`;
}

/** The name of one of the palette's reactions, or the emoji itself. */
export function reactionName(emoji: string): string {
  return REACTIONS.find((r) => r.emoji === emoji)?.name ?? emoji;
}

/**
 * The chips of a message's reactions, in the server's order. Clicking my own chip removes my
 * reaction; clicking another sets mine to it. When the chip that had the focus goes (its
 * count fell to 0), the focus moves to the first chip left, or to `fallback`.
 */
export function ReactionChips({
  reactions,
  mine,
  onReact,
  fallback,
}: {
  reactions: readonly Reaction[];
  mine: string | null;
  onReact: (emoji: string | null) => void;
  fallback: RefObject<HTMLElement | null>;
}) {
  const list = useRef<HTMLUListElement>(null);
  /** the chip with the focus, while it has it */
  const focusedChip = useRef<HTMLElement | null>(null);
  useLayoutEffect(() => {
    const had = focusedChip.current;
    if (!had || had.isConnected) return;
    // the focused chip went (its count fell to 0): on to the first chip left, or the fallback
    focusedChip.current = null;
    const active = document.activeElement;
    if (active !== null && active !== document.body) return;
    (list.current?.querySelector<HTMLButtonElement>('button') ?? fallback.current)?.focus();
  }, [reactions, fallback]);
  if (reactions.length === 0) return null;
  return (
    <ul
      ref={list}
      className="reactions"
      aria-label="Reactions"
      data-testid="reactions"
      onFocus={(e) => {
        focusedChip.current = e.target;
      }}
      onBlur={(e) => {
        // a real blur leaves the chip in the page; a chip removed with the focus on it does
        // not, and the effect above moves the focus on
        const el = e.target;
        setTimeout(() => {
          if (el.isConnected && focusedChip.current === el) focusedChip.current = null;
        }, 0);
      }}
    >
      {reactions.map((r) => {
        const pressed = r.emoji === mine;
        return (
          <li key={r.emoji}>
            <button
              type="button"
              className="chip"
              aria-pressed={pressed}
              aria-label={chipLabel(r, pressed)}
              title={pressed ? 'Remove your reaction' : `React with ${reactionName(r.emoji)}`}
              data-emoji={r.emoji}
              data-count={r.count}
              onClick={() => onReact(pressed ? null : r.emoji)}
            >
              <span className="chip-emoji">{r.emoji}</span> {r.count}
            </button>
          </li>
        );
      })}
    </ul>
  );
}

/**
 * The palette of six reactions a message's React action opens: a toolbar whose buttons the
 * arrow keys, Home and End move between (Tab too); Enter or a click chooses one (mine again:
 * removed); Escape closes it. `onClose(true)` asks for the focus back on the React button.
 */
export function ReactionPalette({
  id,
  mine,
  onPick,
  onClose,
  opener,
}: {
  id: string;
  mine: string | null;
  onPick: (emoji: string | null) => void;
  onClose: (refocus: boolean) => void;
  /** the React button: focus moving there does not close the palette (its click does) */
  opener: RefObject<HTMLElement | null>;
}) {
  const bar = useRef<HTMLDivElement>(null);
  useEffect(() => {
    // opened: the focus on my current reaction, else on the first
    const buttons = [...(bar.current?.querySelectorAll<HTMLButtonElement>('button') ?? [])];
    (buttons.find((b) => b.getAttribute('aria-pressed') === 'true') ?? buttons[0])?.focus();
  }, []);

  function onKeyDown(e: KeyboardEvent<HTMLDivElement>) {
    const buttons = [...(bar.current?.querySelectorAll<HTMLButtonElement>('button') ?? [])];
    const at = buttons.indexOf(document.activeElement as HTMLButtonElement);
    let to: number | null = null;
    switch (e.key) {
      case 'ArrowRight':
      case 'ArrowDown':
        to = (at + 1) % buttons.length;
        break;
      case 'ArrowLeft':
      case 'ArrowUp':
        to = (at - 1 + buttons.length) % buttons.length;
        break;
      case 'Home':
        to = 0;
        break;
      case 'End':
        to = buttons.length - 1;
        break;
      case 'Escape':
        e.preventDefault();
        e.stopPropagation();
        onClose(true);
        return;
      default:
        return;
    }
    e.preventDefault();
    buttons[to]?.focus();
  }

  return (
    <div
      ref={bar}
      id={id}
      className="reaction-palette"
      role="toolbar"
      aria-label="Choose a reaction"
      data-testid="reaction-palette"
      onKeyDown={onKeyDown}
      onBlur={(e) => {
        const to = e.relatedTarget;
        if (to instanceof Node && (bar.current?.contains(to) || opener.current === to)) return;
        onClose(false);
      }}
    >
      {REACTIONS.map((r) => {
        const pressed = r.emoji === mine;
        return (
          <button
            key={r.emoji}
            type="button"
            className="reaction-option"
            aria-pressed={pressed}
            aria-label={r.name}
            title={pressed ? `${r.name} (your reaction: choose it again to remove it)` : r.name}
            data-emoji={r.emoji}
            onClick={() => onPick(pressed ? null : r.emoji)}
          >
            {r.emoji}
          </button>
        );
      })}
    </div>
  );
}
