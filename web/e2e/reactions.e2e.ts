// Reactions through the real stack: one reaction per member and message, chosen from the
// palette the message's React action opens or by clicking a chip under the message. Two
// people (two browser contexts, two sockets) see each other's reactions live; after a reload
// the chips and which one is mine come from history. The tests run in order and share them.
// Bob's socket goes through the test, which can hold back the message.delete frames sent to
// him: he then reacts to a message deleted a moment before, which the server refuses.
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
const title = unique('reactions-');
/** message.delete frames to bob are dropped while set */
let dropDeletes = false;

function bubble(page: Page, seq: number): Locator {
  return page.getByTestId('messages').locator(`li.bubble[data-seq="${seq}"]`);
}

function reactButton(page: Page, seq: number): Locator {
  return bubble(page, seq).getByRole('button', { name: 'React to message', exact: true });
}

function palette(page: Page, seq: number): Locator {
  return bubble(page, seq).getByRole('toolbar', { name: 'Choose a reaction' });
}

interface Chip {
  emoji: string;
  count: number;
  pressed: boolean;
  name: string;
}

/** The chips under message `seq`, in the order shown. */
async function chips(page: Page, seq: number): Promise<Chip[]> {
  return bubble(page, seq)
    .locator('[data-testid="reactions"] button')
    .evaluateAll((els) =>
      els.map((el) => ({
        emoji: el.getAttribute('data-emoji') ?? '',
        count: Number(el.getAttribute('data-count')),
        pressed: el.getAttribute('aria-pressed') === 'true',
        name: el.getAttribute('aria-label') ?? '',
      })),
    );
}

/** "👍 2*" per chip (* for pressed), for comparing. */
async function chipText(page: Page, seq: number): Promise<string> {
  return (await chips(page, seq)).map((c) => `${c.emoji} ${c.count}${c.pressed ? '*' : ''}`).join(' | ');
}

async function showsChips(page: Page, who: string, seq: number, want: string): Promise<void> {
  let last = '';
  try {
    await until(`${who} to show ${JSON.stringify(want)} under message ${seq}`, async () => {
      last = await chipText(page, seq);
      return last === want;
    });
  } catch (e) {
    throw new Error(`${(e as Error).message}; shown: ${JSON.stringify(last)}`);
  }
}

function chip(page: Page, seq: number, emoji: string): Locator {
  return bubble(page, seq).locator(`[data-testid="reactions"] button[data-emoji="${emoji}"]`);
}

/** Whether `loc` has the page's focus. */
async function focused(loc: Locator): Promise<boolean> {
  return loc.evaluate((el) => el === document.activeElement);
}

async function focusedName(page: Page): Promise<string | null> {
  return page.evaluate(() => document.activeElement?.getAttribute('aria-label') ?? null);
}

async function lastSeq(page: Page): Promise<number> {
  return (await shownMessages(page)).filter((m) => m.seq !== null).at(-1)?.seq ?? 0;
}

async function reloadInto(page: Page): Promise<void> {
  await page.reload();
  await waitConnected(page);
  await openConversation(page, title);
}

beforeAll(async () => {
  browser = await launch();
  [a, b] = await newUserPages(browser, 2);
  await b.ctx.routeWebSocket(/\/ws(\?|$)/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((m) => server.send(m));
    server.onMessage((m) => {
      if (dropDeletes && typeof m === 'string' && (JSON.parse(m) as { type?: string }).type === 'message.delete') return;
      ws.send(m);
    });
  });
});

afterAll(async () => {
  await browser?.close();
});

skipAfterFirstFailure();

describe('reactions', () => {
  it('alice writes to bob; the message has no reactions yet', async () => {
    await registerAll(password, [a.page, alice], [b.page, bob]);
    await startConversation(a.page, title, [bob]);
    await send(a.page, 'react to this, please');
    await until('alice\'s message to be stored as seq 1', async () => (await shownMessages(a.page))[0]?.seq === 1);
    await until('bob to list the conversation', async () =>
      (await b.page.getByTestId('conversation-list').getByRole('button', { name: new RegExp(title) }).count()) === 1,
    );
    await openConversation(b.page, title);
    await bubble(b.page, 1).waitFor();
    expect(await chips(a.page, 1)).toEqual([]);
    expect(await chips(b.page, 1)).toEqual([]);
    // the React action is there, its palette closed
    expect(await reactButton(b.page, 1).getAttribute('aria-expanded')).toBe('false');
  });

  it('alice reacts 👍 from the palette; bob sees "👍 1" live, not pressed for him', async () => {
    await reactButton(a.page, 1).click();
    const bar = palette(a.page, 1);
    await bar.waitFor();
    expect(await reactButton(a.page, 1).getAttribute('aria-expanded')).toBe('true');
    // six reactions with names, none chosen yet
    const options = bar.getByRole('button');
    expect(await options.count()).toBe(6);
    expect(await options.evaluateAll((els) => els.map((e) => e.textContent))).toEqual(['👍', '❤️', '😂', '😮', '😢', '🎉']);
    expect(await options.evaluateAll((els) => els.map((e) => e.getAttribute('aria-pressed')))).toEqual(Array(6).fill('false'));
    await screenshot(a.page, 'reactions-00-palette');
    await bar.getByRole('button', { name: 'Thumbs up', exact: true }).click();
    await until('the palette to close', async () => (await bar.count()) === 0);
    await showsChips(a.page, 'alice', 1, '👍 1*');
    await showsChips(b.page, 'bob', 1, '👍 1');
    expect((await chips(a.page, 1))[0]?.name).toBe('👍 1 person: you');
    expect((await chips(b.page, 1))[0]?.name).toBe('👍 1 person');
    expect(await chip(a.page, 1, '👍').textContent()).toBe('👍 1');
  });

  it('bob clicks the 👍 chip: both see 2, pressed for each of them', async () => {
    await chip(b.page, 1, '👍').click();
    await showsChips(b.page, 'bob', 1, '👍 2*');
    await showsChips(a.page, 'alice', 1, '👍 2*');
    expect((await chips(b.page, 1))[0]?.name).toBe('👍 2 people, including you');
    await screenshot(b.page, 'reactions-01-two');
    expect(await accessibilityViolations(b.page)).toEqual([]);
  });

  it('bob replaces his with ❤️ from the palette: one reaction each, in the server\'s order', async () => {
    await reactButton(b.page, 1).click();
    const bar = palette(b.page, 1);
    await bar.waitFor();
    // his reaction is the pressed one, and has the focus
    expect(await bar.getByRole('button', { name: 'Thumbs up', exact: true }).getAttribute('aria-pressed')).toBe('true');
    expect(await focused(bar.getByRole('button', { name: 'Thumbs up', exact: true }))).toBe(true);
    await bar.getByRole('button', { name: 'Heart', exact: true }).click();
    // most first, ties by the emoji's bytes: ❤️ (e2 9d a4…) before 👍 (f0 9f 91 8d)
    await showsChips(b.page, 'bob', 1, '❤️ 1* | 👍 1');
    await showsChips(a.page, 'alice', 1, '❤️ 1 | 👍 1*');
    // the focus went back to the React action
    expect(await focused(reactButton(b.page, 1))).toBe(true);
  });

  it('alice clicks her own chip: her reaction goes', async () => {
    await chip(a.page, 1, '👍').click();
    await showsChips(a.page, 'alice', 1, '❤️ 1');
    await showsChips(b.page, 'bob', 1, '❤️ 1*');
    // the chip she clicked is gone: the focus is on what is left, not lost
    await until('alice\'s focus to stay in the message', async () => (await focusedName(a.page)) !== null);
    expect(await focusedName(a.page)).toBe('❤️ 1 person');
  });

  it('after a reload the chips and which one is mine come from history', async () => {
    await reloadInto(a.page);
    await reloadInto(b.page);
    await showsChips(a.page, 'alice', 1, '❤️ 1');
    await showsChips(b.page, 'bob', 1, '❤️ 1*');
    expect((await chips(b.page, 1))[0]?.name).toBe('❤️ 1 person: you');
  });

  it('the palette from the keyboard: arrows move, Escape closes and gives the focus back, Enter chooses', async () => {
    const react = reactButton(a.page, 1);
    await react.focus();
    await a.page.keyboard.press('Enter');
    const bar = palette(a.page, 1);
    await bar.waitFor();
    // nothing of hers yet: the focus on the first
    expect(await focusedName(a.page)).toBe('Thumbs up');
    await a.page.keyboard.press('ArrowRight');
    expect(await focusedName(a.page)).toBe('Heart');
    await a.page.keyboard.press('ArrowLeft');
    await a.page.keyboard.press('ArrowLeft'); // wraps to the last
    expect(await focusedName(a.page)).toBe('Celebrate');
    await a.page.keyboard.press('Home');
    expect(await focusedName(a.page)).toBe('Thumbs up');
    await a.page.keyboard.press('End');
    expect(await focusedName(a.page)).toBe('Celebrate');
    await a.page.keyboard.press('Tab'); // Tab moves on too: out of the palette, which closes
    await until('the palette to close when the focus leaves it', async () => (await bar.count()) === 0);
    await react.focus();
    await a.page.keyboard.press('Enter');
    await bar.waitFor();
    await a.page.keyboard.press('Escape');
    await until('Escape to close the palette', async () => (await bar.count()) === 0);
    expect(await focused(react)).toBe(true);
    expect(await react.getAttribute('aria-expanded')).toBe('false');
    // open again with Space, choose 😂 with two arrows and Enter
    await a.page.keyboard.press('Space');
    await bar.waitFor();
    await a.page.keyboard.press('ArrowRight');
    await a.page.keyboard.press('ArrowRight');
    expect(await focusedName(a.page)).toBe('Laughing');
    await a.page.keyboard.press('Enter');
    await until('the palette to close', async () => (await bar.count()) === 0);
    expect(await focused(react)).toBe(true);
    await showsChips(a.page, 'alice', 1, '❤️ 1 | 😂 1*');
    await showsChips(b.page, 'bob', 1, '❤️ 1* | 😂 1');
    // the chips from the keyboard as well: Enter on the ❤️ chip sets hers to ❤️
    await chip(a.page, 1, '❤️').focus();
    await a.page.keyboard.press('Enter');
    await showsChips(a.page, 'alice', 1, '❤️ 2*');
    await showsChips(b.page, 'bob', 1, '❤️ 2*');
    // with the palette open, in both colour schemes, axe finds nothing
    await react.click();
    await bar.waitFor();
    expect(await bar.getByRole('button', { name: 'Heart', exact: true }).getAttribute('aria-pressed')).toBe('true');
    await screenshot(a.page, 'reactions-02-keyboard');
    expect(await accessibilityViolations(a.page)).toEqual([]);
    await a.page.emulateMedia({ colorScheme: 'dark' });
    expect(await accessibilityViolations(a.page)).toEqual([]);
    await screenshot(a.page, 'reactions-03-dark');
    await a.page.emulateMedia({ colorScheme: 'light' });
    await a.page.keyboard.press('Escape');
    await until('the palette to close', async () => (await bar.count()) === 0);
  });

  it('a deleted message loses its chips and its React action, live and after a reload', async () => {
    await send(a.page, 'this one will be deleted');
    await until('alice\'s message to be stored as seq 2', async () => (await lastSeq(a.page)) === 2);
    await bubble(b.page, 2).waitFor();
    await reactButton(b.page, 2).click();
    await palette(b.page, 2).getByRole('button', { name: 'Celebrate', exact: true }).click();
    await showsChips(a.page, 'alice', 2, '🎉 1');
    await showsChips(b.page, 'bob', 2, '🎉 1*');
    await bubble(a.page, 2).getByRole('button', { name: 'Delete message' }).click();
    await bubble(a.page, 2).getByRole('button', { name: 'Yes, delete' }).click();
    for (const [page, who] of [[a.page, 'alice'], [b.page, 'bob']] as const) {
      await until(`${who} to show the tombstone`, async () => ((await bubble(page, 2).textContent()) ?? '').includes('This message was deleted.'));
      await showsChips(page, who, 2, '');
      expect(await reactButton(page, 2).count()).toBe(0);
    }
    await reloadInto(a.page);
    await reloadInto(b.page);
    for (const [page, who] of [[a.page, 'alice'], [b.page, 'bob']] as const) {
      await until(`${who} to show the tombstone after a reload`, async () =>
        ((await bubble(page, 2).textContent()) ?? '').includes('This message was deleted.'),
      );
      expect(await chips(page, 2)).toEqual([]);
      expect(await bubble(page, 2).getByRole('button').count()).toBe(0);
      // the other message keeps its reactions
      await showsChips(page, who, 1, '❤️ 2*');
    }
    await screenshot(b.page, 'reactions-04-deleted');
  });

  it('a reaction the server refuses (the message was deleted meanwhile) shows a notice and no chip', async () => {
    await send(a.page, 'deleted before bob reacts');
    await until('alice\'s message to be stored as seq 3', async () => (await lastSeq(a.page)) === 3);
    await bubble(b.page, 3).waitFor();
    dropDeletes = true;
    await bubble(a.page, 3).getByRole('button', { name: 'Delete message' }).click();
    await bubble(a.page, 3).getByRole('button', { name: 'Yes, delete' }).click();
    await until('alice to show the tombstone', async () => ((await bubble(a.page, 3).textContent()) ?? '').includes('This message was deleted.'));
    // bob has not heard of it: he reacts
    expect(await bubble(b.page, 3).textContent()).toContain('deleted before bob reacts');
    await reactButton(b.page, 3).click();
    await palette(b.page, 3).getByRole('button', { name: 'Heart', exact: true }).click();
    const notice = b.page.locator('.notices').getByText('That message was deleted: it takes no reactions.');
    await notice.waitFor();
    expect(await chips(b.page, 3)).toEqual([]);
    expect(await chips(a.page, 3)).toEqual([]);
    await screenshot(b.page, 'reactions-05-refused');
    expect(await accessibilityViolations(b.page)).toEqual([]);
    await b.page.locator('.notices').getByRole('button', { name: 'Dismiss' }).click();
    dropDeletes = false;
    await reloadInto(b.page);
    await until('bob to show the tombstone after a reload', async () =>
      ((await bubble(b.page, 3).textContent()) ?? '').includes('This message was deleted.'),
    );
  });
});
