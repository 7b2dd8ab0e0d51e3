// Reading a conversation through the real stack: links, text shown as text, the direction of
// the text, groups of one sender and date separators, the composer that grows, and opening
// at the first unread message. Two people (two browser contexts, two sockets); the tests run
// in order and share them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Locator, Page } from 'playwright-core';
import {
  accessibilityViolations,
  launch,
  newUserPage,
  newUserPages,
  openConversation,
  registerAll,
  screenshot,
  send,
  shownMessages,
  skipAfterFirstFailure,
  startConversation,
  unique,
  until,
  type UserPage,
  waitConnected,
} from './helpers';

let browser: Browser;
let a: UserPage;
let b: UserPage;
const alice = unique('alice');
const bob = unique('bob');
const password = 'correct horse battery staple';
const title = unique('reading-');

const linkText =
  'read https://en.wikipedia.org/wiki/Pine_(disambiguation). or (http://example.com/a?b=1), ' +
  'mail mailto:ann@example.com! but not javascript:alert(document.cookie) nor data:text/html,hi';
const hostile = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold?</b> & &amp;';
const rtl = 'שלום עולם, מה שלומך?';

function bubble(page: Page, seq: number): Locator {
  return page.getByTestId('messages').locator(`li.bubble[data-seq="${seq}"]`);
}

/** The seq_no of the newest stored message shown. */
async function lastSeq(page: Page): Promise<number> {
  return (await shownMessages(page)).filter((m) => m.seq !== null).at(-1)?.seq ?? 0;
}

/** Waits until message `seq` is shown to `who`, and returns its bubble. */
async function shown(page: Page, who: string, seq: number): Promise<Locator> {
  await until(`${who} to show message ${seq}`, async () => (await bubble(page, seq).count()) === 1);
  return bubble(page, seq);
}

/** Whether message `seq` is on screen inside the message history. */
async function inView(page: Page, seq: number): Promise<boolean> {
  return bubble(page, seq).evaluate((el) => {
    const box = el.getBoundingClientRect();
    const view = (el.closest('.messages') as HTMLElement).getBoundingClientRect();
    return box.bottom > view.top && box.top < view.bottom;
  });
}

function composer(page: Page): Locator {
  return page.getByRole('textbox', { name: 'Message' });
}

async function boxHeight(page: Page): Promise<number> {
  return composer(page).evaluate((el) => el.getBoundingClientRect().height);
}

beforeAll(async () => {
  browser = await launch();
  [a, b] = await newUserPages(browser, 2);
});

afterAll(async () => {
  await browser?.close();
});

skipAfterFirstFailure();

describe('reading', () => {
  it('alice and bob have a conversation', async () => {
    await registerAll(password, [a.page, alice], [b.page, bob]);
    await startConversation(a.page, title, [bob]);
    await until('bob to list the conversation', async () =>
      (await b.page.getByTestId('conversation-list').getByRole('button', { name: new RegExp(title) }).count()) === 1,
    );
    await openConversation(b.page, title);
  });

  it('links are clickable, open in a new tab without an opener; other schemes stay text', async () => {
    await send(a.page, linkText);
    const m = await shown(b.page, 'bob', 1);
    const content = m.locator('.content');
    // the text is the message, byte for byte
    expect(await content.textContent()).toBe(linkText);
    const links = await content.locator('a').evaluateAll((els) =>
      els.map((el) => ({
        text: el.textContent,
        href: el.getAttribute('href'),
        rel: el.getAttribute('rel'),
        target: el.getAttribute('target'),
      })),
    );
    expect(links).toEqual([
      {
        text: 'https://en.wikipedia.org/wiki/Pine_(disambiguation)',
        href: 'https://en.wikipedia.org/wiki/Pine_(disambiguation)',
        rel: 'noopener noreferrer',
        target: '_blank',
      },
      { text: 'http://example.com/a?b=1', href: 'http://example.com/a?b=1', rel: 'noopener noreferrer', target: '_blank' },
      { text: 'mailto:ann@example.com', href: 'mailto:ann@example.com', rel: 'noopener noreferrer', target: null },
    ]);
    // no javascript: or data: link anywhere on the page
    expect(await b.page.locator('a[href^="javascript:" i], a[href^="data:" i]').count()).toBe(0);
    // links are reachable by keyboard and named by their text
    const wiki = content.getByRole('link', { name: 'https://en.wikipedia.org/wiki/Pine_(disambiguation)' });
    await wiki.focus();
    expect(await b.page.evaluate(() => document.activeElement?.tagName)).toBe('A');
    // a click opens a new tab that cannot reach this page (nothing is loaded from the internet)
    await b.ctx.route('https://en.wikipedia.org/**', (route) => route.fulfill({ status: 200, contentType: 'text/html', body: '<p>wiki</p>' }));
    const [popup] = await Promise.all([b.ctx.waitForEvent('page'), wiki.click()]);
    await popup.waitForLoadState();
    expect(popup.url()).toBe('https://en.wikipedia.org/wiki/Pine_(disambiguation)');
    expect(await popup.evaluate(() => window.opener)).toBeNull();
    await popup.close();
    await b.ctx.unroute('https://en.wikipedia.org/**');
    // the sender sees the same links
    expect(await bubble(a.page, 1).locator('.content a').count()).toBe(3);
    await screenshot(b.page, 'reading-00-links');
  });

  it('a hostile message is shown as the text it is', async () => {
    await send(a.page, hostile);
    for (const [page, who] of [[a.page, 'alice'], [b.page, 'bob']] as const) {
      const m = await shown(page, who, 2);
      expect(await m.locator('.content').textContent()).toBe(hostile);
      // no element came from the message
      expect(await m.locator('.content *').count()).toBe(0);
      expect(await page.getByTestId('messages').locator('script, img, b').count()).toBe(0);
      expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
    }
    // nor in the conversation list, which shows the last message
    expect(await b.page.getByTestId('conversation-list').locator('img, script, b').count()).toBe(0);
  });

  it('the direction follows the text: right to left for Hebrew, in messages, quotes, the composer and titles', async () => {
    await send(a.page, rtl);
    const m = await shown(b.page, 'bob', 3);
    const content = m.locator('.content');
    expect(await content.getAttribute('dir')).toBe('auto');
    expect(await content.evaluate((el) => el.matches(':dir(rtl)'))).toBe(true);
    expect(await bubble(b.page, 1).locator('.content').evaluate((el) => el.matches(':dir(ltr)'))).toBe(true);
    // a reply quotes it right to left
    await m.getByRole('button', { name: 'Reply to message', exact: true }).click();
    await send(b.page, 'a reply to the Hebrew one');
    const reply = await shown(a.page, 'alice', 4);
    const quote = reply.getByTestId('quote').locator('.quote-text');
    expect(await quote.getAttribute('dir')).toBe('auto');
    expect(await quote.evaluate((el) => el.matches(':dir(rtl)'))).toBe(true);
    // the composer: right to left while Hebrew is written, left to right again after
    const box = composer(b.page);
    expect(await box.getAttribute('dir')).toBe('auto');
    await box.fill('עברית');
    expect(await box.evaluate((el) => el.matches(':dir(rtl)'))).toBe(true);
    await box.fill('English');
    expect(await box.evaluate((el) => el.matches(':dir(ltr)'))).toBe(true);
    await box.fill('');
    // titles in the list and the heading
    const item = b.page.getByTestId('conversation-list').locator('.convo-title').filter({ hasText: title });
    expect(await item.getAttribute('dir')).toBe('auto');
    expect(await b.page.getByRole('heading', { name: title }).getAttribute('dir')).toBe('auto');
    await screenshot(b.page, 'reading-01-rtl');
  });

  it('consecutive messages of one sender show the name once, under one date separator for today', async () => {
    for (const t of ['first of a run', 'second of a run', 'third of a run']) await send(a.page, t);
    await until('alice\'s run to be stored', async () => (await lastSeq(a.page)) === 7);
    await shown(b.page, 'bob', 7);
    await send(b.page, 'bob breaks the run');
    await shown(b.page, 'bob', 8);
    await send(a.page, 'alice again');
    await shown(b.page, 'bob', 9);
    // the name is shown on the first of each run of alice's messages (bob's own show none)
    const visibleNames = await b.page.getByTestId('messages').locator('li.bubble').evaluateAll((els) =>
      els.map((el) => {
        const s = el.querySelector('.sender');
        return s && !s.classList.contains('visually-hidden') ? s.textContent : null;
      }),
    );
    // 1-3 are alice's (one run), 4 is bob's reply, 5-7 alice's, 8 bob's, 9 alice's
    expect(visibleNames).toEqual([alice, null, null, null, alice, null, null, null, alice]);
    // screen readers still hear who wrote each one
    expect(await bubble(b.page, 6).locator('.sender').textContent()).toBe(alice);
    expect(await bubble(b.page, 6).getAttribute('class')).toContain('continues');
    // every message is today's: one separator, at the top, as a heading
    const seps = b.page.getByTestId('messages').getByTestId('date-separator');
    expect(await seps.count()).toBe(1);
    expect(await seps.first().textContent()).toBe('Today');
    expect(await b.page.getByTestId('messages').getByRole('heading', { name: 'Today', level: 3 }).count()).toBe(1);
    expect(await b.page.getByTestId('messages').locator('ol > li').first().getAttribute('data-testid')).toBe('date-separator');
    await screenshot(b.page, 'reading-02-groups');
    expect(await accessibilityViolations(b.page)).toEqual([]);
  });

  it('the composer grows with its text up to eight lines, then scrolls; Shift+Enter makes a line, Enter sends', async () => {
    const box = composer(b.page);
    await box.click();
    const one = await boxHeight(b.page);
    await box.pressSequentially('line 1');
    for (let i = 2; i <= 4; i++) {
      await box.press('Shift+Enter');
      await box.pressSequentially(`line ${i}`);
    }
    expect(await box.inputValue()).toBe('line 1\nline 2\nline 3\nline 4');
    const four = await boxHeight(b.page);
    expect(four).toBeGreaterThan(one + 40);
    expect(await box.evaluate((el) => el.scrollHeight <= el.clientHeight)).toBe(true);
    for (let i = 5; i <= 14; i++) {
      await box.press('Shift+Enter');
      await box.pressSequentially(`line ${i}`);
    }
    const bound = await boxHeight(b.page);
    expect(bound).toBeGreaterThan(four);
    // eight lines at most: then it scrolls
    const lineHeight = await box.evaluate((el) => parseFloat(getComputedStyle(el).lineHeight));
    expect(bound).toBeLessThanOrEqual(lineHeight * 8 + 24);
    expect(bound).toBeGreaterThanOrEqual(lineHeight * 8);
    expect(await box.evaluate((el) => el.scrollHeight > el.clientHeight && getComputedStyle(el).overflowY === 'auto')).toBe(true);
    await screenshot(b.page, 'reading-03-composer');
    await box.press('Enter');
    const m = await shown(b.page, 'bob', 10);
    expect(await m.locator('.content').textContent()).toBe(Array.from({ length: 14 }, (_, i) => `line ${i + 1}`).join('\n'));
    expect(await box.inputValue()).toBe('');
    await until('the composer to shrink back', async () => Math.abs((await boxHeight(b.page)) - one) < 2);
  });

  it('a conversation opens at its first unread message, even beyond the latest page', async () => {
    // bob is away (the list, no conversation open: a reload would open his conversation
    // again, from its address); alice writes more than a page
    await b.page.goto('/');
    await waitConnected(b.page);
    const first = (await lastSeq(a.page)) + 1;
    const count = 60;
    for (let i = 1; i <= count; i++) await send(a.page, `unread ${i}`);
    const last = first + count - 1;
    await until('alice\'s messages to be stored', async () => (await lastSeq(a.page)) === last, 60_000);
    const item = b.page.getByTestId('conversation-list').getByRole('button', { name: new RegExp(title) });
    await until('bob\'s badge to show them', async () => (await item.getByTestId('unread').textContent())?.startsWith(String(count)) ?? false);
    await openConversation(b.page, title);
    await shown(b.page, 'bob', first);
    await until('the first unread message to be in view', async () => inView(b.page, first));
    // the divider right above it, and the latest message far below
    const divider = b.page.getByTestId('unread-divider');
    expect(await divider.evaluate((el) => el.nextElementSibling?.getAttribute('data-seq'))).toBe(String(first));
    expect(await divider.evaluate((el) => {
      const view = (el.closest('.messages') as HTMLElement).getBoundingClientRect();
      const box = el.getBoundingClientRect();
      return box.top >= view.top - 1 && box.bottom <= view.bottom;
    })).toBe(true);
    expect(await inView(b.page, last)).toBe(false);
    await b.page.getByTestId('new-messages').waitFor();
    await screenshot(b.page, 'reading-04-first-unread');
    // what bob has not seen is not read: alice's last message has no read tick
    await new Promise((r) => setTimeout(r, 1500));
    expect((await shownMessages(a.page)).at(-1)?.tick).not.toBe('read');
    expect(await item.getByTestId('unread').count()).toBe(1);
    // down to the bottom: all read
    await b.page.getByTestId('new-messages').click();
    await until('the latest message to be in view', async () => inView(b.page, last));
    await until('alice to see her last message read', async () => (await shownMessages(a.page)).at(-1)?.tick === 'read');
    await until('bob\'s badge to go', async () => (await item.getByTestId('unread').count()) === 0);
    // opened again with nothing unread: at the bottom, no divider
    await b.page.reload();
    await waitConnected(b.page);
    await openConversation(b.page, title);
    await shown(b.page, 'bob', last);
    await until('the latest message to be in view', async () => inView(b.page, last));
    expect(await b.page.getByTestId('unread-divider').count()).toBe(0);
    expect(await accessibilityViolations(b.page)).toEqual([]);
    await b.page.emulateMedia({ colorScheme: 'dark' });
    expect(await accessibilityViolations(b.page)).toEqual([]);
    await b.page.emulateMedia({ colorScheme: 'light' });
  });

  it('a message of 16 KiB full of links and brackets renders quickly', async () => {
    const unit = 'http://a.example/x_(y) (https://b.example/((( mailto:c@d.example, javascript:e() ';
    const n = Math.floor(16_000 / unit.length);
    const long = unit.repeat(n).trimEnd();
    const seq = (await lastSeq(a.page)) + 1;
    const t0 = Date.now();
    await send(a.page, long);
    const m = await shown(b.page, 'bob', seq);
    expect(Date.now() - t0).toBeLessThan(10_000);
    // compared as a whole, without printing 16 KiB on a failure
    const same = (await m.locator('.content').textContent()) === long;
    expect(same).toBe(true);
    expect(await m.locator('.content a').count()).toBe(3 * n);
    // the page stays responsive: a re-render of the whole conversation is quick
    const ms = await b.page.evaluate(async () => {
      const start = performance.now();
      await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
      return performance.now() - start;
    });
    expect(ms).toBeLessThan(1000);
  });

  it('a day later, the same messages are under "Yesterday", in the viewer\'s locale and time zone', async () => {
    // bob in a browser whose clock is a day ahead (the server's times are today's)
    const c = await newUserPage(browser);
    const page = c.page;
    await c.ctx.clock.install({ time: Date.now() + 24 * 3600_000 });
    await page.goto('/');
    await page.getByRole('heading', { name: 'Log in' }).waitFor();
    await page.getByLabel('Username').fill(bob);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Log in', exact: true }).click();
    await waitConnected(page);
    await openConversation(page, title);
    await until('bob to show the latest page', async () => (await lastSeq(page)) === (await lastSeq(a.page)));
    const seps = page.getByTestId('messages').getByTestId('date-separator');
    await until('the separator to say Yesterday', async () => (await seps.first().textContent()) === 'Yesterday');
    expect(await seps.count()).toBe(1);
    await screenshot(page, 'reading-05-yesterday');
    await c.ctx.close();
  });
});
