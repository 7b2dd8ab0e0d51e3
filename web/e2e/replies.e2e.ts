// Replies through the real stack: a message quotes an earlier one of the same conversation.
// Two people (two browser contexts, two sockets); the tests run in order and share them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Locator, Page } from 'playwright-core';
import {
  accessibilityViolations,
  launch,
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
const title = unique('replies-');
const original = 'the original question from alice: ' + 'does quoting work? '.repeat(8);
const answer = 'bob answers with a quote';

function bubble(page: Page, seq: number): Locator {
  return page.getByTestId('messages').locator(`li.bubble[data-seq="${seq}"]`);
}

/** The quote shown above message `seq`, as text (empty when it has none). */
async function quoteText(page: Page, seq: number): Promise<string> {
  const q = bubble(page, seq).getByTestId('quote');
  return (await q.count()) === 0 ? '' : ((await q.textContent()) ?? '');
}

/** Waits until message `seq` is stored and shows a quote of seq_no `to` containing every text. */
async function showsQuote(page: Page, who: string, seq: number, to: number, ...texts: string[]): Promise<void> {
  await until(`${who} to show message ${seq} quoting ${to} with ${JSON.stringify(texts)}`, async () => {
    if ((await bubble(page, seq).getAttribute('data-reply-to').catch(() => null)) !== String(to)) return false;
    const t = await quoteText(page, seq);
    return texts.every((x) => t.includes(x));
  });
}

/** The seq_no of the newest stored message shown. */
async function lastSeq(page: Page): Promise<number> {
  return (await shownMessages(page)).filter((m) => m.seq !== null).at(-1)?.seq ?? 0;
}

/** Whether message `seq` is on screen inside the message history. */
async function inView(page: Page, seq: number): Promise<boolean> {
  return bubble(page, seq).evaluate((el) => {
    const box = el.getBoundingClientRect();
    const view = (el.closest('.messages') as HTMLElement).getBoundingClientRect();
    return box.bottom > view.top && box.top < view.bottom;
  });
}

async function reloadInto(page: Page): Promise<void> {
  await page.reload();
  await waitConnected(page);
  await openConversation(page, title);
}

beforeAll(async () => {
  browser = await launch();
  [a, b] = await newUserPages(browser, 2);
});

afterAll(async () => {
  await browser?.close();
});

skipAfterFirstFailure();

describe('replies', () => {
  it('alice writes to bob', async () => {
    await registerAll(password, [a.page, alice], [b.page, bob]);
    await startConversation(a.page, title, [bob]);
    await send(a.page, original);
    await until('alice\'s message to be stored as seq 1', async () => (await shownMessages(a.page))[0]?.seq === 1);
    await until('bob to list the conversation', async () =>
      (await b.page.getByTestId('conversation-list').getByRole('button', { name: new RegExp(title) }).count()) === 1,
    );
    await openConversation(b.page, title);
    await bubble(b.page, 1).waitFor();
  });

  it('bob chooses Reply from the keyboard: a bar above the composer, which × and Escape cancel', async () => {
    const reply = bubble(b.page, 1).getByRole('button', { name: 'Reply to message', exact: true });
    await reply.focus();
    await b.page.keyboard.press('Enter');
    const bar = b.page.getByTestId('reply-bar');
    await bar.waitFor();
    const t = (await bar.textContent()) ?? '';
    expect(t).toContain(`Replying to ${alice}: the original question from alice`);
    // a long message is cut to a snippet
    expect(t).toContain('…');
    expect(t.length).toBeLessThan(original.length);
    // the composer has the focus: Escape cancels
    expect(await b.page.evaluate(() => document.activeElement?.tagName)).toBe('TEXTAREA');
    await b.page.keyboard.press('Escape');
    await until('the bar to go on Escape', async () => (await bar.count()) === 0);
    await reply.click();
    await bar.getByRole('button', { name: 'Cancel reply' }).click();
    await until('the bar to go on ×', async () => (await bar.count()) === 0);
    // no reply after a cancel: a plain message has no quote
    await reply.click();
    await bar.waitFor();
    // the bar fits: its × is on screen, however long the quoted message
    const cancel = await bar.getByRole('button', { name: 'Cancel reply' }).boundingBox();
    expect(cancel && cancel.x + cancel.width).toBeLessThanOrEqual(b.page.viewportSize()?.width ?? 0);
    await screenshot(b.page, 'replies-00-bar');
    expect(await accessibilityViolations(b.page)).toEqual([]);
  });

  it('bob sends the reply: the bar clears, both see the quote live', async () => {
    await send(b.page, answer);
    await until('the bar to clear after sending', async () => (await b.page.getByTestId('reply-bar').count()) === 0);
    await showsQuote(b.page, 'bob', 2, 1, alice, 'the original question from alice');
    await showsQuote(a.page, 'alice', 2, 1, alice, 'the original question from alice');
    expect((await shownMessages(a.page))[1]?.text).toBe(answer);
    // the next message is no reply
    await send(b.page, 'and a plain one');
    await until('bob\'s plain message to be stored', async () => (await lastSeq(b.page)) === 3);
    expect(await bubble(b.page, 3).getAttribute('data-reply-to')).toBeNull();
    expect(await quoteText(a.page, 3)).toBe('');
    await screenshot(a.page, 'replies-01-quote');
    expect(await accessibilityViolations(a.page)).toEqual([]);
  });

  it('both see the quote after a reload (from history)', async () => {
    await reloadInto(a.page);
    await reloadInto(b.page);
    for (const [page, who] of [[a.page, 'alice'], [b.page, 'bob']] as const) {
      await showsQuote(page, who, 2, 1, alice, 'the original question from alice');
    }
  });

  it('clicking a quote scrolls to the quoted message and highlights it', async () => {
    for (let i = 1; i <= 30; i++) await send(a.page, `filler ${i}`);
    await until('alice\'s fillers to be stored', async () => (await lastSeq(a.page)) === 33);
    // alice replies to bob's answer, far above now
    await bubble(a.page, 2).getByRole('button', { name: 'Reply to message', exact: true }).click();
    await send(a.page, 'replying to something far above');
    await showsQuote(b.page, 'bob', 34, 2, bob, answer);
    await until('bob to be at the bottom', async () => inView(b.page, 34));
    expect(await inView(b.page, 2)).toBe(false);
    await bubble(b.page, 34).getByTestId('quote').click();
    await until('the quoted message to come into view', async () => inView(b.page, 2));
    expect(await bubble(b.page, 2).getAttribute('class')).toContain('highlight');
    await screenshot(b.page, 'replies-02-jump');
    await until('the highlight to go', async () => !((await bubble(b.page, 2).getAttribute('class')) ?? '').includes('highlight'));
  });

  it('a quote of a message older than the loaded page says its number, and a click loads it', async () => {
    for (let i = 31; i <= 55; i++) await send(a.page, `filler ${i}`);
    await until('alice\'s fillers to be stored', async () => (await lastSeq(a.page)) === 59);
    await bubble(a.page, 1).getByRole('button', { name: 'Reply to message', exact: true }).click();
    await send(a.page, 'back to the very first message');
    await until('alice\'s reply to be stored', async () => (await lastSeq(a.page)) === 60);
    // after a reload bob holds the latest page (50): seq 1 is not loaded
    await reloadInto(b.page);
    await showsQuote(b.page, 'bob', 60, 1, 'message #1');
    expect(await bubble(b.page, 1).count()).toBe(0);
    await bubble(b.page, 60).getByTestId('quote').click();
    await until('the quoted message to be loaded and shown', async () => (await bubble(b.page, 1).count()) === 1 && inView(b.page, 1));
    await showsQuote(b.page, 'bob', 60, 1, alice, 'the original question from alice');
  });

  it('a reply to a message that is then deleted shows "deleted message", live and after a reload', async () => {
    await send(a.page, 'this will be deleted');
    await until('alice\'s message to be stored', async () => (await lastSeq(a.page)) === 61);
    await bubble(b.page, 61).waitFor();
    await bubble(b.page, 61).getByRole('button', { name: 'Reply to message', exact: true }).click();
    await send(b.page, 'a reply to a doomed message');
    await showsQuote(a.page, 'alice', 62, 61, alice, 'this will be deleted');
    await bubble(a.page, 61).getByRole('button', { name: 'Delete message' }).click();
    await bubble(a.page, 61).getByRole('button', { name: 'Yes, delete' }).click();
    for (const [page, who] of [[a.page, 'alice'], [b.page, 'bob']] as const) {
      await showsQuote(page, who, 62, 61, 'deleted message');
      expect(await quoteText(page, 62)).not.toContain('this will be deleted');
      // a tombstone cannot be replied to
      expect(await bubble(page, 61).getByRole('button', { name: 'Reply to message', exact: true }).count()).toBe(0);
    }
    await screenshot(b.page, 'replies-03-deleted');
    await reloadInto(a.page);
    await reloadInto(b.page);
    for (const [page, who] of [[a.page, 'alice'], [b.page, 'bob']] as const) {
      await showsQuote(page, who, 62, 61, 'deleted message');
      // history says deleted_at: still a tombstone, with nothing to reply to or change
      expect(await bubble(page, 61).textContent()).toContain('This message was deleted.');
      expect(await bubble(page, 61).getByRole('button').count()).toBe(0);
    }
    await b.page.emulateMedia({ colorScheme: 'dark' });
    expect(await accessibilityViolations(b.page)).toEqual([]);
    await b.page.emulateMedia({ colorScheme: 'light' });
  });
});
