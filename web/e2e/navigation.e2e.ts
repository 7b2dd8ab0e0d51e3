// Finding one's way through the real stack: every conversation has its own address (a
// reload opens it again, Back and Forward move between conversations and the list); the
// tab's title and favicon count the unread messages; a hidden tab raises desktop
// notifications (the test captures them by wrapping window.Notification, and says the tab
// is hidden by overriding document.visibilityState), and a muted conversation raises none
// and is not counted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import {
  accessibilityViolations,
  clickNotification,
  launch,
  listItem,
  newUserPage,
  newWatchedUserPage,
  notifications,
  openConversation,
  openConvoId,
  pathOf,
  permissionAsks,
  register,
  registerAll,
  screenshot,
  send,
  setHidden,
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
const first = unique('first-');
const second = unique('second-');
let firstId = '';
let secondId = '';

async function title(page: Page): Promise<string> {
  return page.evaluate(() => document.title);
}

async function favicon(page: Page): Promise<string> {
  return page.evaluate(() => document.querySelector<HTMLLinkElement>('link[rel~="icon"]')?.getAttribute('href') ?? '');
}

async function heading(page: Page, name: string): Promise<void> {
  await page.getByRole('heading', { name, exact: true }).waitFor();
}

/** Alice writes `text` in a conversation and waits until it is stored. */
async function aliceWrites(convo: string, text: string): Promise<void> {
  await openConversation(a.page, convo);
  await send(a.page, text);
  await until(`alice's "${text}" to be stored`, async () => {
    const last = (await shownMessages(a.page)).at(-1);
    return last?.text === text && last.seq !== null;
  });
}

async function unreadOf(page: Page, id: string): Promise<number> {
  const badge = listItem(page, id).getByTestId('unread');
  return (await badge.count()) === 0 ? 0 : parseInt((await badge.textContent()) ?? '0', 10);
}

beforeAll(async () => {
  browser = await launch();
  a = await newUserPage(browser);
  b = await newWatchedUserPage(browser); // the browser allows bob's notifications
});

afterAll(async () => {
  await browser?.close();
});

skipAfterFirstFailure();

describe('addresses, the title and notifications', () => {
  it('alice starts two conversations with bob', async () => {
    await registerAll(password, [a.page, alice], [b.page, bob]);
    await startConversation(a.page, first, [bob]);
    firstId = await openConvoId(a.page);
    await send(a.page, 'hello in the first');
    await startConversation(a.page, second, [bob]);
    secondId = await openConvoId(a.page);
    await send(a.page, 'hello in the second');
    await until('bob to list both', async () => (await listItem(b.page, firstId).count()) === 1 && (await listItem(b.page, secondId).count()) === 1);
  });

  it('each conversation has its address; a reload opens it again; Back and Forward move between them and the list', async () => {
    expect(pathOf(b.page)).toBe('/');
    await openConversation(b.page, first);
    expect(pathOf(b.page)).toBe(`/c/${encodeURIComponent(firstId)}`);
    await b.page.reload();
    await waitConnected(b.page);
    await heading(b.page, first);
    await until('the first conversation\'s messages after the reload', async () => (await shownMessages(b.page)).length > 0);
    await openConversation(b.page, second);
    expect(pathOf(b.page)).toBe(`/c/${encodeURIComponent(secondId)}`);
    await b.page.goBack();
    await heading(b.page, first);
    expect(pathOf(b.page)).toBe(`/c/${encodeURIComponent(firstId)}`);
    expect(await listItem(b.page, firstId).getAttribute('aria-current')).toBe('true');
    await b.page.goBack();
    expect(pathOf(b.page)).toBe('/');
    await b.page.getByText('Pick a conversation, or start a new one.').waitFor();
    await b.page.goForward();
    await heading(b.page, first);
    await b.page.goForward();
    await heading(b.page, second);
    expect(pathOf(b.page)).toBe(`/c/${encodeURIComponent(secondId)}`);
    // a message's own address, typed in or followed from elsewhere
    await b.page.goto(`/c/${encodeURIComponent(firstId)}/m/1`);
    await waitConnected(b.page);
    await heading(b.page, first);
    await b.page.getByTestId('messages').locator('li.bubble[data-seq="1"].highlight').waitFor();
    await b.page.goBack();
    await heading(b.page, second);
    await screenshot(b.page, '12-deep-link');
    // an address of no conversation of mine says so
    await b.page.goto('/c/g_not_a_conversation_of_mine');
    await waitConnected(b.page);
    await b.page.getByRole('alert').filter({ hasText: /conversation/i }).first().waitFor();
    await b.page.goBack();
    await heading(b.page, second);
  });

  it('the title and the favicon count what is unread', async () => {
    // bob reads the second conversation; alice writes in the first
    await until('bob to have read everything', async () => (await title(b.page)) === 'kchat');
    expect(await favicon(b.page)).toBe('data:,');
    await aliceWrites(first, 'are you there?');
    await until('bob\'s title to count it', async () => (await title(b.page)) === '(1) kchat');
    expect(await favicon(b.page)).toMatch(/^data:image\/svg\+xml,/);
    expect(decodeURIComponent(await favicon(b.page))).toMatch(/>1<\/text>/);
    await aliceWrites(first, 'hello?');
    await until('bob\'s title to count two', async () => (await title(b.page)) === '(2) kchat');
    await screenshot(b.page, '13-unread-title');
    await openConversation(b.page, first);
    await until('bob\'s title to be plain once he read them', async () => (await title(b.page)) === 'kchat');
    expect(await favicon(b.page)).toBe('data:,');
  });

  it('while the tab is hidden, a message raises a desktop notification; a click opens its conversation', async () => {
    // the permission was never asked for: the browser had it already
    expect(await permissionAsks(b.page)).toBe(0);
    const toggle = b.page.getByTestId('notifications');
    expect(await toggle.getAttribute('aria-pressed')).toBe('true');
    // visible: no notification
    await aliceWrites(first, 'you can see this one');
    await until('bob to see it', async () => (await shownMessages(b.page)).at(-1)?.text === 'you can see this one');
    expect(await notifications(b.page)).toEqual([]);
    await setHidden(b.page, true);
    await aliceWrites(second, 'a message for the hidden tab');
    await until('a notification', async () => (await notifications(b.page)).length === 1);
    expect(await notifications(b.page)).toEqual([{ title: `${alice} in ${second}`, body: 'a message for the hidden tab' }]);
    // hidden, the open conversation notifies too, and its message stays unread
    await aliceWrites(first, 'and one where you were');
    await until('a second notification', async () => (await notifications(b.page)).length === 2);
    expect((await notifications(b.page))[1]?.body).toBe('and one where you were');
    await until('bob\'s title to count both', async () => (await title(b.page)) === '(2) kchat');
    // a click brings the tab forward and opens the conversation
    await clickNotification(b.page, 0);
    await heading(b.page, second);
    expect(pathOf(b.page)).toBe(`/c/${encodeURIComponent(secondId)}`);
    await setHidden(b.page, false);
    await screenshot(b.page, '14-notification');
    // bob turns them off: none any more, hidden or not
    await toggle.click();
    expect(await toggle.getAttribute('aria-pressed')).toBe('false');
    await setHidden(b.page, true);
    await aliceWrites(second, 'not announced');
    await until('bob to get it', async () => (await shownMessages(b.page)).at(-1)?.text === 'not announced');
    expect(await notifications(b.page)).toHaveLength(2);
    await setHidden(b.page, false);
    await toggle.click();
    expect(await toggle.getAttribute('aria-pressed')).toBe('true');
  });

  it('a muted conversation raises no notification and is not counted in the title', async () => {
    await openConversation(b.page, first);
    await until('bob to have read everything', async () => (await title(b.page)) === 'kchat');
    // mute the second for 8 hours, from its header
    await openConversation(b.page, second);
    const mute = b.page.getByTestId('mute-button');
    await mute.click();
    const menu = b.page.getByRole('group', { name: 'Mute this conversation' });
    await menu.waitFor();
    expect(await menu.getByRole('button').allTextContents()).toEqual(['For 1 hour', 'For 8 hours', 'For 1 week', 'Until I unmute it']);
    expect(await accessibilityViolations(b.page)).toEqual([]);
    await menu.getByRole('button', { name: 'For 8 hours' }).click();
    await until('the header to say muted', async () => (await mute.textContent()) === 'Unmute');
    expect(await b.page.getByTestId('mute-state').textContent()).toMatch(/^Muted until /);
    await listItem(b.page, secondId).getByTestId('muted').waitFor();
    // the focus stays on the control
    expect(await b.page.evaluate(() => document.activeElement?.getAttribute('data-testid'))).toBe('mute-button');
    await screenshot(b.page, '15-muted');
    // bob looks at the first; the tab goes to the background; alice writes in both
    await openConversation(b.page, first);
    await setHidden(b.page, true);
    const before = (await notifications(b.page)).length;
    await aliceWrites(second, 'muted, so quiet');
    await until('the muted conversation to show it unread', async () => (await unreadOf(b.page, secondId)) === 1);
    await aliceWrites(first, 'but this one rings');
    await until('the notification of the other', async () => (await notifications(b.page)).length === before + 1);
    expect((await notifications(b.page)).slice(before)).toEqual([{ title: `${alice} in ${first}`, body: 'but this one rings' }]);
    // the title counts the first's message only
    await until('bob\'s title to count one', async () => (await title(b.page)) === '(1) kchat');
    await setHidden(b.page, false);
    await until('bob\'s title to be plain once he sees the first\'s', async () => (await title(b.page)) === 'kchat');
    expect(await unreadOf(b.page, secondId)).toBe(1);
    expect(await accessibilityViolations(b.page)).toEqual([]);
    // the mute is bob's, kept by the server: after a reload it is still there
    await b.page.reload();
    await waitConnected(b.page);
    await listItem(b.page, secondId).getByTestId('muted').waitFor();
    expect(await title(b.page)).toBe('kchat');
    // unmuted: counted again
    await openConversation(b.page, second);
    await b.page.getByTestId('mute-button').click();
    await until('the header to say not muted', async () => (await b.page.getByTestId('mute-button').textContent()) === 'Mute');
    expect(await listItem(b.page, secondId).getByTestId('muted').count()).toBe(0);
    await setHidden(b.page, true);
    await aliceWrites(second, 'loud again');
    await until('a notification again', async () => (await notifications(b.page)).some((n) => n.body === 'loud again'));
    await setHidden(b.page, false);
  });

  it('without the permission, notifications are asked for only when the user chooses', async () => {
    const c = await newWatchedUserPage(browser, false);
    await register(c.page, unique('carol'), password);
    const enable = c.page.getByRole('button', { name: 'Enable desktop notifications' });
    await enable.waitFor();
    expect(await permissionAsks(c.page)).toBe(0);
    await enable.click();
    await until('the permission to be asked for', async () => (await permissionAsks(c.page)) === 1);
    await c.ctx.close();
  });
});
