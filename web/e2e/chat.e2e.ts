// Two people chat through the real stack: two browser contexts (two users, two sockets)
// against the ingress. The tests run in order and share the two users.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import {
  accessibilityViolations,
  assertGapFree,
  launch,
  newUserPage,
  newUserPages,
  openConversation,
  register,
  registerAll,
  screenshot,
  send,
  shownMessages,
  skipAfterFirstFailure,
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
const title = unique('e2e-');
let aliceId = '';
let bobId = '';
/** what both must see, in order */
const expected: string[] = [];

async function texts(page: Page): Promise<string[]> {
  return (await shownMessages(page)).map((m) => m.text);
}

/** Waits until the page shows exactly `expected`, all stored, seq 1..n, none twice. */
async function showsAll(page: Page, who: string): Promise<void> {
  await until(`${who} to show all ${expected.length} messages`, async () => {
    const shown = await shownMessages(page);
    return shown.length === expected.length && shown.every((m, i) => m.text === expected[i] && m.seq === i + 1);
  });
  const shown = await shownMessages(page);
  assertGapFree(shown);
  expect(shown.map((m) => m.text)).toEqual(expected);
}

beforeAll(async () => {
  browser = await launch();
  [a, b] = await newUserPages(browser, 2);
});

afterAll(async () => {
  await browser?.close();
});

skipAfterFirstFailure();

describe('two people chat', () => {
  it('both register and log in', async () => {
    await a.page.goto('/');
    await a.page.getByRole('heading', { name: 'Log in' }).waitFor();
    await screenshot(a.page, '01-login');
    [aliceId, bobId] = await registerAll(password, [a.page, alice], [b.page, bob]);
    expect(aliceId).toMatch(/^u_/);
    expect(bobId).toMatch(/^u_/);
    expect(aliceId).not.toBe(bobId);
  });

  it('alice starts a conversation with bob and writes; bob sees it with an unread badge', async () => {
    await a.page.getByRole('button', { name: 'New conversation' }).click();
    await a.page.getByLabel('Title (optional)').fill(title);
    // people are named by username; an unknown one is refused with a clear message
    const nobody = unique('nobody');
    await a.page.getByLabel('People').fill(`${bob}, ${nobody}`);
    await a.page.getByRole('button', { name: 'Start conversation' }).click();
    await a.page.getByRole('alert').filter({ hasText: `No user named "${nobody}"` }).waitFor();
    await a.page.getByLabel('People').fill(bob);
    await a.page.getByRole('button', { name: 'Start conversation' }).click();
    await a.page.getByRole('heading', { name: title }).waitFor();
    // the other member is shown by name, not by id
    expect(await a.page.getByTestId('presence').locator(`[data-user-id="${bobId}"]`).textContent()).toContain(bob);

    expected.push('hello bob, this is alice');
    await send(a.page, expected[0] as string);
    // the optimistic bubble becomes the stored message 1 on the ack
    await until('alice\'s message to be acked as seq 1', async () => (await shownMessages(a.page))[0]?.seq === 1);

    const item = b.page.getByTestId('conversation-list').getByRole('button', { name: new RegExp(title) });
    await item.waitFor();
    await until('bob\'s unread badge to show 1', async () => (await item.getByTestId('unread').textContent())?.startsWith('1') ?? false);
    expect(await item.textContent()).toContain(expected[0]);
    await screenshot(b.page, '02-conversation-list');
  });

  it('bob opens it, alice sees the read tick and bob online', async () => {
    await openConversation(b.page, title);
    await showsAll(b.page, 'bob');
    // opened with one unread message: the divider sits right above it
    const divider = b.page.getByTestId('unread-divider');
    await divider.waitFor();
    expect(await divider.evaluate((el) => el.nextElementSibling?.getAttribute('data-seq'))).toBe('1');
    await until('alice\'s message to be marked read', async () => (await shownMessages(a.page))[0]?.tick === 'read');
    await until('bob to be online for alice', async () =>
      (await a.page.getByTestId('presence').locator(`[data-user-id="${bobId}"]`).getAttribute('data-online')) === 'true',
    );
    await until('alice to be online for bob', async () =>
      (await b.page.getByTestId('presence').locator(`[data-user-id="${aliceId}"]`).getAttribute('data-online')) === 'true',
    );
    expect(await b.page.getByTestId('presence').locator(`[data-user-id="${aliceId}"]`).textContent()).toContain(alice);
  });

  it('each sees the other typing, and they chat both ways', async () => {
    const box = b.page.getByRole('textbox', { name: 'Message' });
    await box.pressSequentially('hi al', { delay: 30 });
    await until('alice to see bob typing', async () => /typing/.test((await a.page.getByTestId('typing').textContent()) ?? ''));
    await screenshot(a.page, '03-typing');
    await box.fill('');
    expected.push('hi alice! bob here');
    await send(b.page, expected[1] as string);
    await showsAll(a.page, 'alice');
    await until('the typing indicator to go', async () => ((await a.page.getByTestId('typing').textContent()) ?? '') === '');

    await a.page.getByRole('textbox', { name: 'Message' }).pressSequentially('so', { delay: 30 });
    await until('bob to see alice typing', async () => /typing/.test((await b.page.getByTestId('typing').textContent()) ?? ''));
    expected.push('so, does it work?');
    await a.page.getByRole('textbox', { name: 'Message' }).fill(expected[2] as string);
    await a.page.getByRole('textbox', { name: 'Message' }).press('Enter');
    expected.push('it does — ça marche, with “unicode” too');
    await send(b.page, expected[3] as string);
    await showsAll(a.page, 'alice');
    await showsAll(b.page, 'bob');
    await until('bob\'s message to be read by alice', async () => (await shownMessages(b.page))[3]?.tick === 'read');
    await screenshot(a.page, '04-conversation');
    expect(await accessibilityViolations(a.page)).toEqual([]);
    await a.page.emulateMedia({ colorScheme: 'dark' });
    expect(await accessibilityViolations(a.page)).toEqual([]);
    await screenshot(a.page, '04-conversation-dark');
    await a.page.emulateMedia({ colorScheme: 'light' });
  });

  it('bob reloads and sees the whole history once; alice reloads and keeps her read ticks', async () => {
    await b.page.reload();
    await waitConnected(b.page);
    await openConversation(b.page, title);
    await showsAll(b.page, 'bob after a reload');
    await a.page.reload();
    await waitConnected(a.page);
    await openConversation(a.page, title);
    await until('alice\'s first message to show read after her reload', async () => (await shownMessages(a.page))[0]?.tick === 'read');
  });

  it('bob goes offline, alice keeps writing, bob comes back to every message once', async () => {
    await b.ctx.setOffline(true);
    await until('bob to show offline', async () => (await b.page.getByTestId('connection').textContent())?.includes('Offline') ?? false);
    await until('bob to be offline for alice', async () =>
      (await a.page.getByTestId('presence').locator(`[data-user-id="${bobId}"]`).getAttribute('data-online')) === 'false',
    );
    for (let i = 1; i <= 5; i++) {
      const t = `while you were away ${i}`;
      expected.push(t);
      await send(a.page, t);
    }
    await until('alice\'s five messages to be acked', async () => (await shownMessages(a.page)).every((m) => m.seq !== null));
    // bob writes while offline: an optimistic bubble that waits for the connection
    await send(b.page, 'written offline');
    await until('bob\'s offline bubble to wait', async () => (await shownMessages(b.page)).some((m) => m.pending === 'queued'));
    await screenshot(b.page, '05-offline');
    expect(await accessibilityViolations(b.page)).toEqual([]);

    await b.ctx.setOffline(false);
    await waitConnected(b.page);
    expected.push('written offline');
    await showsAll(b.page, 'bob after coming back');
    await showsAll(a.page, 'alice');
  });

  it('older pages load on scroll', async () => {
    // more than a page (50) of messages, then bob reloads: the latest page first, then the rest
    for (let i = 1; i <= 55; i++) {
      const t = `bulk ${i}`;
      expected.push(t);
      await send(a.page, t);
    }
    await showsAll(a.page, 'alice');
    await b.page.reload();
    await waitConnected(b.page);
    await openConversation(b.page, title);
    await until('bob to show the latest page', async () => (await texts(b.page)).at(-1) === expected.at(-1));
    const first = await shownMessages(b.page);
    expect(first.length).toBeLessThan(expected.length);
    expect(first.length).toBeGreaterThanOrEqual(50);
    for (let i = 0; i < 10 && (await shownMessages(b.page)).length < expected.length; i++) {
      await b.page.locator('.messages').evaluate((el) => {
        el.scrollTop = 0;
      });
      await new Promise((r) => setTimeout(r, 300));
    }
    await showsAll(b.page, 'bob after scrolling up');
    await b.page.getByText('This is the beginning of the conversation.').waitFor();
  });

  it('a message that arrives while bob is scrolled up is not read until he sees it', async () => {
    // bob is at the top of the conversation after the previous test
    const t = 'while you were scrolled up';
    expected.push(t);
    await send(a.page, t);
    const pill = b.page.getByTestId('new-messages');
    await pill.waitFor();
    expect(await pill.textContent()).toContain('1 new message');
    // bob's client has it and shows it unread: no read marker was sent for it
    const item = b.page.getByTestId('conversation-list').getByRole('button', { name: new RegExp(title) });
    await until('bob\'s unread badge to show 1', async () => (await item.getByTestId('unread').textContent())?.startsWith('1') ?? false);
    expect((await shownMessages(a.page)).at(-1)?.tick).not.toBe('read');
    // it reached bob's socket: alice sees it delivered, also after a reload (the receipts'
    // delivered_seq, which the gateways keep)
    await until('alice\'s message to show delivered', async () => (await shownMessages(a.page)).at(-1)?.tick === 'delivered');
    // (in a second tab of hers, so this one keeps every page it loaded; the gateways write
    // the marks about twice a second: a tab opened a moment too early shows the one before,
    // so it is reloaded until it is there)
    const tab = await a.ctx.newPage();
    await tab.goto('/');
    await until('alice\'s message to show delivered in a fresh tab', async () => {
      await tab.reload();
      await waitConnected(tab);
      await openConversation(tab, title);
      await until('alice\'s messages to show', async () => (await shownMessages(tab)).length > 0);
      return (await shownMessages(tab)).at(-1)?.tick === 'delivered';
    });
    await tab.close();
    // the pill takes him down: now it is read
    await pill.click();
    await until('alice\'s message to be marked read once bob saw it', async () => (await shownMessages(a.page)).at(-1)?.tick === 'read');
    await until('bob\'s badge to go', async () => (await item.getByTestId('unread').count()) === 0);
  });

  it('search finds a message', async () => {
    await a.page.getByRole('searchbox', { name: 'Search messages' }).fill('unicode');
    await a.page.getByRole('searchbox', { name: 'Search messages' }).press('Enter');
    const results = a.page.getByTestId('search-results');
    await until('the search to find bob\'s message', async () => ((await results.textContent()) ?? '').includes('unicode'));
    await screenshot(a.page, '06-search');
  });

  it('can be used from the keyboard alone', async () => {
    const page = b.page;
    await page.goto('/');
    await waitConnected(page);
    // Tab through the page: the skip link, search, New conversation, then the conversation
    const seen: string[] = [];
    for (let i = 0; i < 12; i++) {
      await page.keyboard.press('Tab');
      const here = await page.evaluate(() => {
        const el = document.activeElement;
        return el ? `${el.tagName.toLowerCase()}:${el.getAttribute('aria-label') ?? el.textContent?.trim().slice(0, 40) ?? ''}` : '';
      });
      seen.push(here);
      if (here.includes(title)) break;
    }
    expect(seen[0]).toContain('Skip to conversation');
    expect(seen.some((s) => s.startsWith('input:'))).toBe(true); // the search box
    expect(seen.some((s) => s.includes('New conversation'))).toBe(true);
    expect(seen.at(-1)).toContain(title);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: title }).waitFor();
    // the composer has the focus: type and press Enter to send
    expect(await page.evaluate(() => document.activeElement?.tagName)).toBe('TEXTAREA');
    expected.push('sent with the keyboard alone');
    await page.keyboard.type('sent with the keyboard alone');
    await page.keyboard.press('Enter');
    // bob shows the latest page since the reload; its last message is this one, stored
    await until('bob\'s keyboard message to be stored', async () => {
      const last = (await shownMessages(page)).at(-1);
      return last?.text === expected.at(-1) && last?.seq === expected.length;
    });
    await openConversation(a.page, title); // alice was looking at search results
    await showsAll(a.page, 'alice');
  });

  it('works at phone width', async () => {
    await a.page.setViewportSize({ width: 390, height: 780 });
    await a.page.getByRole('button', { name: 'Back to conversations' }).click();
    await a.page.getByTestId('conversation-list').waitFor();
    await screenshot(a.page, '07-phone-list');
    await openConversation(a.page, title);
    await screenshot(a.page, '08-phone-conversation');
    expect(await accessibilityViolations(a.page)).toEqual([]);
    expect(await a.page.getByTestId('conversation-list').isVisible()).toBe(false);
  });

  it('in a group, alice sees who has seen her message, also after a reload', async () => {
    await a.page.setViewportSize({ width: 1200, height: 800 });
    const c = await newUserPage(browser);
    const carol = unique('carol');
    await register(c.page, carol, password);
    const group = unique('group-');
    await a.page.getByRole('button', { name: 'New conversation' }).click();
    await a.page.getByLabel('Title (optional)').fill(group);
    await a.page.getByLabel('People').fill(`${bob}, ${carol}`);
    await a.page.getByRole('button', { name: 'Start conversation' }).click();
    await a.page.getByRole('heading', { name: group }).waitFor();
    await send(a.page, 'hello both');
    await until('alice\'s group message to be stored', async () => (await shownMessages(a.page))[0]?.seq === 1);
    const seen = a.page.getByTestId('seen-by');
    for (const [page, who] of [[b.page, bob], [c.page, carol]] as const) {
      await openConversation(page, group);
      await until(`${who} to show alice's message`, async () => (await shownMessages(page))[0]?.text === 'hello both');
      await until(`alice to see that ${who} has seen it`, async () => ((await seen.textContent().catch(() => '')) ?? '').includes(who));
    }
    expect(await seen.textContent()).toMatch(/^Seen by /);
    await a.page.reload();
    await waitConnected(a.page);
    await openConversation(a.page, group);
    await until('"seen by" to come back after the reload', async () => {
      const t = (await a.page.getByTestId('seen-by').textContent().catch(() => '')) ?? '';
      return t.includes(bob) && t.includes(carol);
    });
    await c.ctx.close();
  });

  it('alice sets a display name and bob finds her by it', async () => {
    const full = `Alice ${unique('Liddell')}`;
    await a.page.getByTestId('me-name').click();
    await a.page.getByLabel('Your display name').fill(`  ${full}  `);
    await a.page.getByLabel('Your display name').press('Enter');
    await until('alice\'s name to show', async () => (await a.page.getByTestId('me-name').textContent())?.startsWith(`${full} (${alice})`) ?? false);
    await b.page.getByRole('button', { name: 'New conversation' }).click();
    await b.page.getByLabel('People').fill(full.slice(0, -2).toLowerCase());
    const option = b.page.getByTestId('people-suggestions').locator(`[data-user-id="${aliceId}"]`);
    await option.waitFor();
    expect(await option.textContent()).toContain(full);
    await b.page.getByRole('button', { name: 'Cancel' }).click();
  });

  it('a pair has one direct conversation, whoever starts it and however the name is typed', async () => {
    const directIds = (page: Page) =>
      page
        .getByTestId('conversation-list')
        .locator('[data-convo-id^="d_"]')
        .evaluateAll((els) => els.map((e) => e.getAttribute('data-convo-id')));
    const start = async (page: Page, who: string, shown: string) => {
      await page.getByRole('button', { name: 'New conversation' }).click();
      await page.getByLabel('People').fill(who);
      await page.getByRole('button', { name: 'Start conversation' }).click();
      await page.getByRole('heading', { name: shown, exact: true }).waitFor();
    };
    // the people picker suggests bob from the start of his name; no title and one person:
    // their direct conversation, named after him
    await a.page.getByRole('button', { name: 'New conversation' }).click();
    await a.page.getByLabel('People').fill(bob.slice(0, -3).toUpperCase());
    const option = a.page.getByTestId('people-suggestions').locator(`[data-user-id="${bobId}"]`);
    await option.waitFor();
    expect(await option.textContent()).toContain(bob);
    await option.click();
    expect(await a.page.getByLabel('People').inputValue()).toBe(`${bob}, `);
    await a.page.getByRole('button', { name: 'Start conversation' }).click();
    await a.page.getByRole('heading', { name: bob, exact: true }).waitFor();
    await until('alice to list one direct conversation', async () => (await directIds(a.page)).length === 1);
    const [id] = await directIds(a.page);
    expect(id).toMatch(/^d_/);
    // asked again, with the name in capitals: the same one, not a second
    await start(a.page, bob.toUpperCase(), bob);
    // bob asks for his with alice: the same one again
    await b.page.goto('/');
    await waitConnected(b.page);
    await start(b.page, alice, alice);
    await until('bob to list the same one direct conversation', async () => {
      const ids = await directIds(b.page);
      return ids.length === 1 && ids[0] === id;
    });
    expect(await directIds(a.page)).toEqual([id]);
    await send(b.page, 'just between us');
    await until('alice to see bob\'s direct message', async () =>
      (await a.page.getByTestId('conversation-list').locator(`[data-convo-id="${id}"]`).textContent())?.includes('just between us') ?? false,
    );
    // bob edits it: both see the new text, marked edited; only the author may
    await a.page.getByTestId('conversation-list').locator(`[data-convo-id="${id}"]`).click();
    const aBubble = a.page.getByTestId('messages').locator('li.bubble[data-seq="1"]');
    await aBubble.waitFor();
    expect(await aBubble.getByRole('button', { name: 'Edit message' }).count()).toBe(0);
    const bBubble = b.page.getByTestId('messages').locator('li.bubble[data-seq="1"]');
    await until('bob\'s message to be stored', async () => (await bBubble.count()) === 1);
    await bBubble.getByRole('button', { name: 'Edit message' }).click();
    await bBubble.getByLabel('Edit message').fill('just between the two of us');
    await bBubble.getByLabel('Edit message').press('Enter');
    for (const bubble of [aBubble, bBubble]) {
      await until('the edit to show', async () => {
        const t = (await bubble.textContent()) ?? '';
        return t.includes('just between the two of us') && t.includes('edited');
      });
    }
    await screenshot(b.page, '09-edited');
    // and deletes it, after a confirmation: a tombstone for both
    await bBubble.getByRole('button', { name: 'Delete message' }).click();
    await bBubble.getByRole('button', { name: 'Yes, delete' }).click();
    for (const bubble of [aBubble, bBubble]) {
      await until('the tombstone to show', async () => ((await bubble.textContent()) ?? '').includes('This message was deleted.'));
    }
    expect(await bBubble.getByRole('button', { name: 'Edit message' }).count()).toBe(0);
    expect(await accessibilityViolations(b.page)).toEqual([]);
  });
});
