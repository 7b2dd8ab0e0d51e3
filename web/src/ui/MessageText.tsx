import { Fragment, useMemo } from 'react';
import { linkify } from './linkify';

/** A message's text with its http, https and mailto links clickable; everything else is text
 * (React elements from linkify's tokens, never HTML). */
export function MessageText({ text }: { text: string }) {
  const tokens = useMemo(() => linkify(text), [text]);
  return (
    <>
      {tokens.map((t, i) =>
        t.kind === 'text' ? (
          <Fragment key={i}>{t.text}</Fragment>
        ) : t.scheme === 'mailto' ? (
          <a key={i} href={t.href} rel="noopener noreferrer">
            {t.text}
          </a>
        ) : (
          <a key={i} href={t.href} target="_blank" rel="noopener noreferrer">
            {t.text}
          </a>
        ),
      )}
    </>
  );
}
