import { describe, expect, it } from 'vitest';
import { headlineText, splitHeadline } from './headline';

const S = '\uE000';
const E = '\uE001';

describe('a search headline: the matched words between U+E000 and U+E001', () => {
  it('splits plain and marked runs, in order', () => {
    expect(splitHeadline(`the ${S}pineapple${E} is ${S}ripe${E}`)).toEqual([
      { text: 'the ', marked: false },
      { text: 'pineapple', marked: true },
      { text: ' is ', marked: false },
      { text: 'ripe', marked: true },
    ]);
    expect(splitHeadline(`${S}all${E}`)).toEqual([{ text: 'all', marked: true }]);
    expect(splitHeadline('no match marked')).toEqual([{ text: 'no match marked', marked: false }]);
    expect(splitHeadline('')).toEqual([]);
  });

  it('joins neighbours of one kind and drops empty runs', () => {
    expect(splitHeadline(`${S}quick${E}${S}brown${E} fox`)).toEqual([
      { text: 'quickbrown', marked: true },
      { text: ' fox', marked: false },
    ]);
    expect(splitHeadline(`a${S}${E}b`)).toEqual([{ text: 'ab', marked: false }]);
  });

  it('survives stray and unclosed sentinels, and never lets one through', () => {
    expect(splitHeadline(`a${E}b`)).toEqual([{ text: 'ab', marked: false }]);
    expect(splitHeadline(`a ${S}b ${S}c${E} d`)).toEqual([
      { text: 'a ', marked: false },
      { text: 'b c', marked: true },
      { text: ' d', marked: false },
    ]);
    expect(splitHeadline(`tail ${S}open`)).toEqual([
      { text: 'tail ', marked: false },
      { text: 'open', marked: true },
    ]);
    for (const p of splitHeadline(`${E}${S}x${S}${E}${E}y${S}`)) expect(p.text).not.toMatch(/[\uE000\uE001]/);
  });

  it('keeps markup as text: the parts are text, never HTML', () => {
    expect(splitHeadline(`<b>${S}<img src=x onerror=alert(1)>${E}</b>`)).toEqual([
      { text: '<b>', marked: false },
      { text: '<img src=x onerror=alert(1)>', marked: true },
      { text: '</b>', marked: false },
    ]);
  });

  it('keeps characters outside the BMP whole', () => {
    expect(splitHeadline(`😀 ${S}🍍${E}`)).toEqual([
      { text: '😀 ', marked: false },
      { text: '🍍', marked: true },
    ]);
    expect(headlineText(`a ${S}b${E} c`)).toBe('a b c');
  });
});
