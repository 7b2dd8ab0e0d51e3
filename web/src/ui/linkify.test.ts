import { describe, expect, it } from 'vitest';
import { MAX_LINK, linkify, type Token } from './linkify';

/** The links found in `text`, as their text. */
function links(text: string): string[] {
  return linkify(text)
    .filter((t) => t.kind === 'link')
    .map((t) => t.text);
}

function joined(tokens: Token[]): string {
  return tokens.map((t) => t.text).join('');
}

describe('linkify', () => {
  it('leaves text without links as one text token, and the empty text as none', () => {
    expect(linkify('just words, no links.')).toEqual([{ kind: 'text', text: 'just words, no links.' }]);
    expect(linkify('')).toEqual([]);
  });

  it('finds http, https and mailto links among text', () => {
    expect(linkify('see https://example.com/a?b=1#c and http://example.org or mailto:ann@example.com now')).toEqual([
      { kind: 'text', text: 'see ' },
      { kind: 'link', text: 'https://example.com/a?b=1#c', href: 'https://example.com/a?b=1#c', scheme: 'https' },
      { kind: 'text', text: ' and ' },
      { kind: 'link', text: 'http://example.org', href: 'http://example.org/', scheme: 'http' },
      { kind: 'text', text: ' or ' },
      { kind: 'link', text: 'mailto:ann@example.com', href: 'mailto:ann@example.com', scheme: 'mailto' },
      { kind: 'text', text: ' now' },
    ]);
  });

  it('finds a link at the very start and end, and one standing alone', () => {
    expect(links('https://a.example')).toEqual(['https://a.example']);
    expect(links('https://a.example x https://b.example')).toEqual(['https://a.example', 'https://b.example']);
    expect(links('HTTPS://EXAMPLE.COM/Path')).toEqual(['HTTPS://EXAMPLE.COM/Path']);
  });

  it('leaves trailing punctuation out of a link', () => {
    for (const p of ['.', ',', ')', '!', '?', ':', ';', '...', '?!', ').', '"', "'"]) {
      expect(links(`look at https://example.com/x${p}`), p).toEqual(['https://example.com/x']);
    }
    expect(linkify('(https://example.com/x).')).toEqual([
      { kind: 'text', text: '(' },
      { kind: 'link', text: 'https://example.com/x', href: 'https://example.com/x', scheme: 'https' },
      { kind: 'text', text: ').' },
    ]);
    // punctuation inside a link stays
    expect(links('https://example.com/a.b,c;d:e!f?g=h.')).toEqual(['https://example.com/a.b,c;d:e!f?g=h']);
    expect(links('write to mailto:ann@example.com, please')).toEqual(['mailto:ann@example.com']);
  });

  it('keeps balanced brackets inside a link, as in Wikipedia links', () => {
    expect(links('https://en.wikipedia.org/wiki/Pine_(disambiguation)')).toEqual(['https://en.wikipedia.org/wiki/Pine_(disambiguation)']);
    expect(links('(see https://en.wikipedia.org/wiki/Pine_(disambiguation))')).toEqual(['https://en.wikipedia.org/wiki/Pine_(disambiguation)']);
    expect(links('see https://en.wikipedia.org/wiki/Pine_(disambiguation).')).toEqual(['https://en.wikipedia.org/wiki/Pine_(disambiguation)']);
    expect(links('https://example.com/a_(b)_(c)')).toEqual(['https://example.com/a_(b)_(c)']);
    expect(links('[https://example.com/x]')).toEqual(['https://example.com/x']);
    expect(links('https://example.com/x[1]')).toEqual(['https://example.com/x[1]']);
  });

  it('refuses javascript:, data:, vbscript: and every other scheme', () => {
    for (const t of [
      'javascript:alert(1)',
      'JavaScript:alert(document.cookie)',
      'data:text/html,<script>alert(1)</script>',
      'vbscript:msgbox(1)',
      'file:///etc/passwd',
      'ftp://example.com',
      'tel:+123456',
      'javascript:http://example.com',
      'xhttp://example.com',
      'ahttps://example.com',
    ]) {
      expect(linkify(t), t).toEqual([{ kind: 'text', text: t }]);
    }
  });

  it('refuses a link without a host or a mail address without an @', () => {
    for (const t of ['http://', 'https:// example.com', 'http://.', 'https://)', 'http:///x', 'mailto:', 'mailto:nobody', 'mailto:@example.com', 'mailto:a@']) {
      expect(links(t), t).toEqual([]);
    }
  });

  it('stops a link at white space, quotes, angle brackets and full-width punctuation', () => {
    expect(links('<https://example.com/a>')).toEqual(['https://example.com/a']);
    expect(links('"https://example.com/a"')).toEqual(['https://example.com/a']);
    expect(links('https://example.com/a\nnext line')).toEqual(['https://example.com/a']);
    expect(links('看这里https://example.com/a。谢谢')).toEqual(['https://example.com/a']);
  });

  it('gives an href that is the link itself, parsed, never another scheme', () => {
    for (const t of linkify('a https://example.com/ä?q=a b http://[::1]:8080/x mailto:x@y.z')) {
      if (t.kind !== 'link') continue;
      expect(t.href).toMatch(/^(https?:\/\/|mailto:)/);
    }
    const [l] = linkify('http://example.com/a b').filter((t) => t.kind === 'link');
    expect(l).toMatchObject({ href: 'http://example.com/a' });
  });

  it('keeps the text byte for byte: the tokens join to the message', () => {
    const samples = [
      'plain',
      '  leading and trailing  ',
      '<script>alert(1)</script> https://example.com/<img src=x onerror=alert(1)>',
      'שלום https://example.com/עברית, עולם',
      'emoji 😀 https://example.com/😀 🎉',
      'a\u0000b https://x.example\u0007c',
      'mailto:a@b.c,mailto:d@e.f;https://g.h/(i))))',
      'http://http://example.com',
    ];
    for (const s of samples) expect(joined(linkify(s)), s).toBe(s);
    // random messages built from the characters that matter
    const parts = ['http://', 'https://', 'mailto:', 'a@b.c', 'x.y', '(', ')', '.', ',', ' ', '\n', 'é', '😀', '<', '>', '"', 'javascript:', '/'];
    let seed = 42;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    for (let n = 0; n < 500; n++) {
      let s = '';
      for (let k = Math.floor(rand() * 30); k > 0; k--) s += parts[Math.floor(rand() * parts.length)];
      const tokens = linkify(s);
      expect(joined(tokens), s).toBe(s);
      for (const t of tokens) {
        if (t.kind === 'link') expect(t.href, s).toMatch(/^(https?:\/\/|mailto:)/i);
      }
    }
  });

  it('bounds the work on a long message', () => {
    const cases = [
      'https://example.com/' + '('.repeat(16 * 1024),
      'https://example.com/' + ')'.repeat(16 * 1024),
      'https://example.com/' + '.'.repeat(16 * 1024),
      'https://'.repeat(2048),
      'mailto:' + 'a'.repeat(16 * 1024),
      'mailto:a@' + '@'.repeat(16 * 1024),
      'http://a.b '.repeat(1500),
      'x'.repeat(16 * 1024),
      // many prefixes that are no links, each running to the end of the message
      'http://a:x('.repeat(1500),
      '(https://a.b:99999'.repeat(900),
      '(mailto:a@b@'.repeat(1300),
    ];
    const t0 = performance.now();
    for (const s of cases) expect(joined(linkify(s))).toBe(s);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(links('http://a.b '.repeat(1500))).toHaveLength(1500);
    // a run longer than MAX_LINK is no link
    expect(links('https://example.com/' + 'a'.repeat(MAX_LINK))).toEqual([]);
    expect(links('https://example.com/' + 'a'.repeat(MAX_LINK - 100))).toHaveLength(1);
    expect(links('https://例え.jp/パス 𝐀 https://𝐀.example')).toEqual(['https://例え.jp/パス', 'https://𝐀.example']);
  });
});
