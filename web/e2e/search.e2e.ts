// Search through the real stack: ranked results paged with the server's cursor, the matched
// words marked from each result's headline, and a result that opens its conversation at the
// message (history about it with around_seq), far above the newest ones, from where the
// history grows both ways until it joins the live messages.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Locator, Page } from 'playwright-core';
import {
  accessibilityViolations,
  launch,
  newUserPages,
  openConvoId,
  pathOf,
  registerAll,
  screenshot,
  send,
  shownMessages,
  skipAfterFirstFailure,
  startConversation,
  unique,
  until,
  type UserPage,
} from './helpers';

let browser: Browser;
let a: UserPage;
let b: UserPage;
const alice = unique('alice');
const bob = unique('bob');
const password = 'correct horse battery staple';
const title = unique('search-');
// words no other test writes: every message has `common`; message HIT alone has `needle`
const common = unique('plum');
const needle = unique('kumquat');
const TOTAL = 120;
const HIT = 40;
let convoId = '';
/** the history requests of bob's page */
const history: string[] = [];

function bubble(page: Page, seq: number): Locator {
  return page.getByTestId('messages').locator(`li.bubble[data-seq="${seq}"]`);
}

function textOf(seq: number): string {
  return seq === HIT ? `the ${needle} is ripe, said message ${seq} (${common})` : `message ${seq} about a ${common}`;
}

/** Whether message `seq` is on screen inside the message history. */
async function inView(page: Page, seq: number): Promise<boolean> {
  if ((await bubble(page, seq).count()) === 0) return false;
  return bubble(page, seq).evaluate((el) => {
    const box = el.getBoundingClientRect();
    const view = (el.closest('.messages') as HTMLElement).getBoundingClientRect();
    return box.bottom > view.top && box.top < view.bottom;
  });
}

async function storedSeqs(page: Page): Promise<number[]> {
  return (await shownMessages(page)).map((m) => m.seq).filter((s): s is number => s !== null);
}

/** Searches from the sidebar until the results hold `n` results at least (the search index
 * is written a moment after the message). */
async function search(page: Page, q: string, n: number): Promise<Locator> {
  const hits = page.getByTestId('search-results').locator('button.search-hit');
  await until(`a search for ${q} to find ${n} results`, async () => {
    await page.getByRole('searchbox', { name: 'Search messages' }).fill(q);
    await page.getByRole('searchbox', { name: 'Search messages' }).press('Enter');
    await page.getByRole('heading', { name: `Results for “${q}”` }).waitFor();
    await until('the search to answer', async () => (await page.getByText('Searching…').count()) === 0, 5000);
    return (await hits.count()) >= n;
  }, 30_000);
  return hits;
}

beforeAll(async () => {
  browser = await launch();
  [a, b] = await newUserPages(browser, 2);
  b.page.on('request', (r) => {
    if (/\/conversations\/[^/]+\/messages\?/.test(r.url())) history.push(r.url());
  });
});

afterAll(async () => {
  await browser?.close();
});

skipAfterFirstFailure();

describe('search', () => {
  it(`alice writes ${TOTAL} messages to bob`, async () => {
    await registerAll(password, [a.page, alice], [b.page, bob]);
    await startConversation(a.page, title, [bob]);
    convoId = await openConvoId(a.page);
    for (let i = 1; i <= TOTAL; i++) await send(a.page, textOf(i));
    await until(`alice's ${TOTAL} messages to be stored`, async () => (await storedSeqs(a.page)).at(-1) === TOTAL, 60_000);
  });

  it('ranked results come a page at a time: "More results" asks for the next with the cursor', async () => {
    const hits = await search(b.page, common, 20);
    expect(await hits.count()).toBe(20); // the server's page
    const more = b.page.getByTestId('more-results');
    await more.click();
    await until('the second page', async () => (await hits.count()) === 40);
    // the focus goes to the first new result
    expect(await b.page.evaluate(() => document.activeElement?.getAttribute('data-seq'))).toBe(await hits.nth(20).getAttribute('data-seq'));
    const keys = await hits.evaluateAll((els) => els.map((el) => `${el.getAttribute('data-convo-id')}:${el.getAttribute('data-seq')}`));
    expect(new Set(keys).size).toBe(40);
    // every result marks the word it was found by
    const marks = await hits.evaluateAll((els) => els.map((el) => Array.from(el.querySelectorAll('mark'), (m) => m.textContent)));
    for (const m of marks) expect(m).toContain(common);
    await screenshot(b.page, '11-search-more');
    expect(await accessibilityViolations(b.page)).toEqual([]);
    // on to the end: the last page has no "More results"
    for (let i = 0; i < 10 && (await more.count()) > 0; i++) {
      const n = await hits.count();
      await more.click();
      await until('another page', async () => (await hits.count()) > n || (await more.count()) === 0);
    }
    expect(await hits.count()).toBe(TOTAL);
    expect(await more.count()).toBe(0);
  });

  it('a result shows its headline with the matched word marked, as text', async () => {
    const hits = await search(b.page, needle, 1);
    expect(await hits.count()).toBe(1);
    const headline = hits.first().getByTestId('headline');
    expect(await headline.locator('mark').allTextContents()).toEqual([needle]);
    const text = (await headline.textContent()) ?? '';
    expect(text).toContain(`${needle} is ripe`);
    expect(text).not.toMatch(/[\uE000\uE001]/);
    expect(await hits.first().getAttribute('data-seq')).toBe(String(HIT));
  });

  it('opening it opens the conversation at that message, far above the newest, highlighted', async () => {
    await b.page.getByTestId('search-results').locator('button.search-hit').first().click();
    await until('the hit to be shown, highlighted', async () =>
      (await inView(b.page, HIT)) && ((await bubble(b.page, HIT).getAttribute('class')) ?? '').includes('highlight'),
    );
    expect(pathOf(b.page)).toBe(`/c/${encodeURIComponent(convoId)}/m/${HIT}`);
    expect(history.some((u) => u.includes(`around_seq=${HIT}`))).toBe(true);
    // its neighbours on both sides, and nothing of the newest page
    const seqs = await storedSeqs(b.page);
    for (const s of [HIT - 2, HIT - 1, HIT + 1, HIT + 2]) expect(seqs).toContain(s);
    expect(seqs).not.toContain(TOTAL);
    expect(await bubble(b.page, HIT).locator('.content').textContent()).toBe(textOf(HIT));
    // the message has the focus; the way back to the newest messages is offered
    expect(await b.page.evaluate(() => document.activeElement?.getAttribute('data-seq'))).toBe(String(HIT));
    // (bob read what he saw: what is left unread is below)
    expect(await b.page.getByTestId('new-messages').textContent()).toMatch(/^↓ (\d+ new messages|Latest messages)$/);
    await screenshot(b.page, '10-search-jump');
    expect(await accessibilityViolations(b.page)).toEqual([]);
    await until('the highlight to go', async () => !((await bubble(b.page, HIT).getAttribute('class')) ?? '').includes('highlight'));
  });

  it('scrolling up loads the older pages, down the newer ones, until it joins the live messages', async () => {
    const list = b.page.locator('.messages');
    for (let i = 0; i < 10 && !(await storedSeqs(b.page)).includes(1); i++) {
      await list.evaluate((el) => {
        el.scrollTop = 0;
      });
      await new Promise((r) => setTimeout(r, 300));
    }
    await b.page.getByText('This is the beginning of the conversation.').waitFor();
    expect(history.some((u) => /before_seq=\d+/.test(u))).toBe(true);
    for (let i = 0; i < 15 && (await b.page.getByTestId('load-newer').count()) > 0; i++) {
      await list.evaluate((el) => {
        el.scrollTop = el.scrollHeight;
      });
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(await b.page.getByTestId('load-newer').count()).toBe(0);
    expect(history.some((u) => /since_seq=\d+/.test(u))).toBe(true);
    // every message once, in order, without a hole
    expect(await storedSeqs(b.page)).toEqual(Array.from({ length: TOTAL }, (_, i) => i + 1));
    // live again: alice's next message comes straight in
    await send(a.page, 'and now live');
    await until('bob to see the live message', async () => (await shownMessages(b.page)).at(-1)?.text === 'and now live');
    expect((await shownMessages(b.page)).at(-1)?.seq).toBe(TOTAL + 1);
  });

  it('a message link opens there after a reload too, and a message sent from there goes to the newest', async () => {
    await b.page.goto(`/c/${encodeURIComponent(convoId)}/m/${HIT}`);
    await until('the linked message to be shown, highlighted', async () =>
      (await inView(b.page, HIT)) && ((await bubble(b.page, HIT).getAttribute('class')) ?? '').includes('highlight'),
    );
    expect(await storedSeqs(b.page)).not.toContain(TOTAL + 1);
    await send(b.page, 'written from the past');
    await until('bob to be at the newest messages with his own', async () => {
      const shown = await shownMessages(b.page);
      return shown.at(-1)?.text === 'written from the past' && shown.some((m) => m.seq === TOTAL + 1);
    });
    expect(pathOf(b.page)).toBe(`/c/${encodeURIComponent(convoId)}`);
    await until('his message to be stored', async () => (await shownMessages(b.page)).at(-1)?.seq === TOTAL + 2);
  });
});
