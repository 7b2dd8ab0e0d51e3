// A search result's headline: the server puts each matched word between U+E000 (start) and
// U+E001 (end), private-use characters it takes out of the text first. The page shows the
// marked words as <mark> elements built as React nodes; everything else is plain text.

export const MARK_START = '\uE000';
export const MARK_END = '\uE001';

export interface HeadlinePart {
  text: string;
  marked: boolean;
}

/**
 * The headline as plain and marked runs, in order, none empty, no two neighbours of the same
 * kind. A start inside a marked run and an end outside one are dropped; a run still open at
 * the end is marked up to there. The sentinels never reach the result.
 */
export function splitHeadline(headline: string): HeadlinePart[] {
  const out: HeadlinePart[] = [];
  let marked = false;
  let run = '';
  const flush = () => {
    if (run === '') return;
    const last = out.at(-1);
    if (last && last.marked === marked) last.text += run;
    else out.push({ text: run, marked });
    run = '';
  };
  for (const ch of headline) {
    if (ch === MARK_START) {
      if (!marked) {
        flush();
        marked = true;
      }
    } else if (ch === MARK_END) {
      if (marked) {
        flush();
        marked = false;
      }
    } else {
      run += ch;
    }
  }
  flush();
  return out;
}

/** The headline's words as plain text (the sentinels taken out). */
export function headlineText(headline: string): string {
  return headline.replace(/[\uE000\uE001]/g, '');
}
