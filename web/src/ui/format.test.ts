import { describe, expect, it } from 'vitest';
import { snippetOf } from './format';

describe('the snippet of a quoted message', () => {
  it('folds whitespace and keeps a short text whole', () => {
    expect(snippetOf('  hello\n\n  there\tyou ')).toBe('hello there you');
  });

  it('cuts a long one at 100 characters, whole code points, with an ellipsis', () => {
    const long = 'x'.repeat(99) + '😀' + 'y'.repeat(50);
    const s = snippetOf(long);
    expect(Array.from(s)).toHaveLength(101);
    expect(s.endsWith('😀…')).toBe(true);
    expect(snippetOf('a'.repeat(100))).toBe('a'.repeat(100));
  });
});
