// Conversation roles through the real stack: four people in a group, each in a browser
// context of their own. The owner renames the group and sets its topic, makes a member an
// admin; the admin removes someone; a member leaves; the owner leaves and the admin becomes
// owner. Each sees the others' changes live. The tests run in order and share the users.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import {
  accessibilityViolations,
  details,
  launch,
  listItem,
  memberRow,
  newUserPages,
  openConvoId,
  openDetails,
  register,
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

type User = { ctx: BrowserContext; page: Page; name: string; id: string };

let browser: Browser;
const password = 'correct horse battery staple';
const users: Record<'alice' | 'bob' | 'carol' | 'dave', User> = {} as never;
let title = unique('team-');
let convoId = '';

const heading = (page: Page) => page.locator('.convo-header h2');
const role = (page: Page, userId: string) => memberRow(page, userId).getAttribute('data-role');
const button = (page: Page, userId: string, name: string) =>
  memberRow(page, userId).getByRole('button', { name: new RegExp(`^${name}\\b`) });

beforeAll(async () => {
  browser = await launch();
  const pages = await newUserPages(browser, 4);
  (['alice', 'bob', 'carol', 'dave'] as const).forEach((who, i) => {
    users[who] = { ...(pages[i] as UserPage), name: unique(who), id: '' };
  });
});

afterAll(async () => {
  await browser?.close();
});

skipAfterFirstFailure();

describe('conversation roles', () => {
  it('four register; alice starts a group with the three others, who open it', async () => {
    const { alice, bob, carol, dave } = users;
    for (const u of [alice, bob, carol, dave]) u.id = await register(u.page, u.name, password);
    await startConversation(alice.page, title, [bob.name, carol.name, dave.name]);
    convoId = await openConvoId(alice.page);
    await send(alice.page, 'hello team');
    await until('alice\'s message to be stored', async () => (await shownMessages(alice.page))[0]?.seq === 1);
    for (const u of [bob, carol, dave]) {
      await listItem(u.page, convoId).click();
      await heading(u.page).filter({ hasText: title }).waitFor();
      await until(`${u.name} to show the message`, async () => (await shownMessages(u.page))[0]?.text === 'hello team');
    }
  });

  it('the owner sees her badge, presence and every action; a plain member sees no manage action', async () => {
    const { alice, bob } = users;
    expect(await alice.page.getByTestId('members-button').textContent()).toBe('Members (4)');
    const panel = await openDetails(alice.page);
    expect(await role(alice.page, alice.id)).toBe('owner');
    expect(await memberRow(alice.page, alice.id).textContent()).toContain(`${alice.name} (you)`);
    expect(await memberRow(alice.page, alice.id).textContent()).toContain('Owner');
    for (const u of [users.bob, users.carol, users.dave]) {
      expect(await role(alice.page, u.id)).toBe('member');
      expect(await memberRow(alice.page, u.id).textContent()).toContain(u.name);
      expect(await button(alice.page, u.id, 'Make admin').count()).toBe(1);
      expect(await button(alice.page, u.id, 'Make owner').count()).toBe(1);
      expect(await button(alice.page, u.id, 'Remove').count()).toBe(1);
    }
    await until('bob to show online in alice\'s panel', async () => (await memberRow(alice.page, bob.id).getAttribute('data-online')) === 'true');
    expect(await panel.getByRole('textbox', { name: 'Title' }).inputValue()).toBe(title);
    expect(await panel.getByRole('combobox', { name: 'Add people' }).count()).toBe(1);
    expect(await panel.getByRole('button', { name: 'Leave conversation' }).count()).toBe(1);
    await screenshot(alice.page, '20-members-owner');
    expect(await accessibilityViolations(alice.page)).toEqual([]);
    await alice.page.emulateMedia({ colorScheme: 'dark' });
    expect(await accessibilityViolations(alice.page)).toEqual([]);
    await alice.page.emulateMedia({ colorScheme: 'light' });

    // bob, a plain member: the title and topic to read, the members, and leaving; nothing else
    const bobs = await openDetails(bob.page);
    expect(await role(bob.page, alice.id)).toBe('owner');
    expect(await bobs.getByTestId('panel-title').textContent()).toBe(title);
    expect(await bobs.getByRole('textbox', { name: 'Title' }).count()).toBe(0);
    expect(await bobs.getByRole('combobox', { name: 'Add people' }).count()).toBe(0);
    for (const name of ['Make admin', 'Make owner', 'Make member', 'Remove', 'Save', 'Clear topic']) {
      expect(await bobs.getByRole('button', { name: new RegExp(`^${name}\\b`) }).count(), name).toBe(0);
    }
    expect(await bobs.getByRole('button', { name: 'Leave conversation' }).count()).toBe(1);
    await screenshot(bob.page, '21-members-member');
    // Escape closes it, and the focus is back on the button that opened it
    await bob.page.keyboard.press('Escape');
    await until('bob\'s panel to close', async () => (await details(bob.page).count()) === 0);
    await until('the focus to be back on the members button', () =>
      bob.page.evaluate(() => document.activeElement?.getAttribute('data-testid') === 'members-button'),
    );
    // and it opens from the keyboard
    await bob.page.keyboard.press('Enter');
    await details(bob.page).waitFor();
    await bob.page.keyboard.press('Escape');
    await until('bob\'s panel to close again', async () => (await details(bob.page).count()) === 0);
  });

  it('alice renames the group and sets its topic; bob\'s view follows live', async () => {
    const { alice, bob } = users;
    const panel = details(alice.page);
    title = unique('renamed-');
    await panel.getByRole('textbox', { name: 'Title' }).fill(title);
    await panel.getByRole('textbox', { name: 'Topic' }).fill('friday: the plan');
    await panel.getByRole('button', { name: 'Save' }).click();
    await until('alice\'s save to be done', async () => (await panel.getByTestId('panel-status').textContent()) === 'Saved.');
    await heading(alice.page).filter({ hasText: title }).waitFor();
    // bob has the conversation open with no panel: the header and the list change
    await heading(bob.page).filter({ hasText: title }).waitFor();
    await until('bob to see the topic', async () => ((await bob.page.getByTestId('topic').textContent().catch(() => '')) ?? '').includes('friday: the plan'));
    await until('bob\'s list to show the new title', async () => ((await listItem(bob.page, convoId).textContent()) ?? '').includes(title));
    await screenshot(bob.page, '22-topic');
    // alice clears the topic, then sets another
    await panel.getByRole('button', { name: 'Clear topic' }).click();
    await until('bob\'s topic to go', async () => (await bob.page.getByTestId('topic').count()) === 0);
    await panel.getByRole('textbox', { name: 'Topic' }).fill('the plan for friday');
    await panel.getByRole('textbox', { name: 'Topic' }).press('Enter');
    await until('bob to see the new topic', async () => ((await bob.page.getByTestId('topic').textContent().catch(() => '')) ?? '').includes('the plan for friday'));
    // after a reload too (the read model has it)
    await bob.page.reload();
    await waitConnected(bob.page);
    await listItem(bob.page, convoId).click();
    await heading(bob.page).filter({ hasText: title }).waitFor();
    expect(await bob.page.getByTestId('topic').textContent()).toContain('the plan for friday');
  });

  it('alice makes bob an admin; bob sees it live and gets the admin actions', async () => {
    const { alice, bob, carol } = users;
    await openDetails(bob.page);
    await button(alice.page, bob.id, 'Make admin').click();
    await until('bob to be admin for alice', async () => (await role(alice.page, bob.id)) === 'admin');
    expect(await memberRow(alice.page, bob.id).textContent()).toContain('Admin');
    await until('bob to be admin in his own panel', async () => (await role(bob.page, bob.id)) === 'admin');
    const panel = details(bob.page);
    await panel.getByRole('textbox', { name: 'Title' }).waitFor();
    expect(await button(bob.page, carol.id, 'Remove').count()).toBe(1);
    expect(await button(bob.page, carol.id, 'Make admin').count()).toBe(1);
    // but nothing on the owner, and no making owners
    expect(await button(bob.page, alice.id, 'Remove').count()).toBe(0);
    expect(await button(bob.page, alice.id, 'Make member').count()).toBe(0);
    expect(await panel.getByRole('button', { name: /^Make owner\b/ }).count()).toBe(0);
    await screenshot(bob.page, '23-members-admin');
  });

  it('bob, an admin, removes carol: the conversation leaves carol\'s list and view', async () => {
    const { alice, bob, carol } = users;
    expect(await heading(carol.page).textContent()).toBe(title);
    await button(bob.page, carol.id, 'Remove').click();
    await memberRow(bob.page, carol.id).getByRole('button', { name: 'Yes, remove' }).click();
    await until('carol to leave bob\'s panel', async () => (await memberRow(bob.page, carol.id).count()) === 0);
    await until('carol to leave alice\'s panel', async () => (await memberRow(alice.page, carol.id).count()) === 0);
    expect(await alice.page.getByTestId('members-button').textContent()).toBe('Members (3)');
    // carol: the conversation goes from her list, its view closes, and a notice says why
    await until('the conversation to leave carol\'s list', async () => (await listItem(carol.page, convoId).count()) === 0);
    await until('carol\'s view to close', async () => (await heading(carol.page).count()) === 0);
    await carol.page.getByRole('alert').filter({ hasText: `${bob.name} removed you from “${title}”` }).waitFor();
    await screenshot(carol.page, '24-removed');
    // and the server agrees after a reload
    await carol.page.reload();
    await waitConnected(carol.page);
    await carol.page.getByTestId('conversation-list').or(carol.page.getByText('No conversations yet.')).first().waitFor();
    expect(await listItem(carol.page, convoId).count()).toBe(0);
  });

  it('dave leaves, after a confirmation', async () => {
    const { alice, dave } = users;
    const panel = await openDetails(dave.page);
    await panel.getByRole('button', { name: 'Leave conversation' }).click();
    expect(await panel.textContent()).toContain(`Leave “${title}”?`);
    await panel.getByRole('button', { name: 'Yes, leave' }).click();
    await until('the conversation to leave dave\'s list', async () => (await listItem(dave.page, convoId).count()) === 0);
    await until('dave\'s view to close', async () => (await heading(dave.page).count()) === 0);
    await dave.page.getByRole('alert').filter({ hasText: `You left “${title}”` }).waitFor();
    await until('dave to leave alice\'s panel', async () => (await memberRow(alice.page, dave.id).count()) === 0);
  });

  it('alice adds carol back with the people picker; an unknown name is refused in the panel', async () => {
    const { alice, carol } = users;
    const panel = details(alice.page);
    const field = panel.getByRole('combobox', { name: 'Add people' });
    const nobody = unique('nobody');
    await field.fill(nobody);
    await panel.getByRole('button', { name: 'Add', exact: true }).click();
    await panel.getByTestId('panel-error').filter({ hasText: `No user named "${nobody}"` }).waitFor();
    await field.fill(carol.name.slice(0, -2));
    const option = panel.getByTestId('people-suggestions').locator(`[data-user-id="${carol.id}"]`);
    await option.waitFor();
    await option.click();
    await panel.getByRole('button', { name: 'Add', exact: true }).click();
    await until('carol to be a member again', async () => (await role(alice.page, carol.id)) === 'member');
    expect(await panel.getByTestId('panel-error').count()).toBe(0);
    await until('the conversation to come back to carol\'s list', async () => (await listItem(carol.page, convoId).count()) === 1);
    await listItem(carol.page, convoId).click();
    await heading(carol.page).filter({ hasText: title }).waitFor();
    await until('carol to read the history', async () => (await shownMessages(carol.page))[0]?.text === 'hello team');
  });

  it('alice, the only owner, leaves: bob, the admin, becomes the owner', async () => {
    const { alice, bob, carol } = users;
    const panel = details(alice.page);
    await panel.getByRole('button', { name: 'Leave conversation' }).click();
    expect(await panel.textContent()).toContain('You are its only owner');
    await panel.getByRole('button', { name: 'Yes, leave' }).click();
    await until('the conversation to leave alice\'s list', async () => (await listItem(alice.page, convoId).count()) === 0);
    await until('bob to be the owner in his panel', async () => (await role(bob.page, bob.id)) === 'owner');
    expect(await memberRow(bob.page, alice.id).count()).toBe(0);
    expect(await button(bob.page, carol.id, 'Make owner').count()).toBe(1);
    await bob.page.keyboard.press('Escape');
  });

  it('a direct conversation shows the other person only, with nothing to manage', async () => {
    const { bob, carol } = users;
    await bob.page.getByRole('button', { name: 'New conversation' }).click();
    await bob.page.getByLabel('People').fill(carol.name);
    await bob.page.getByRole('button', { name: 'Start conversation' }).click();
    await bob.page.getByRole('heading', { name: carol.name, exact: true }).waitFor();
    expect(await bob.page.getByTestId('members-button').textContent()).toBe('Details');
    const panel = await openDetails(bob.page);
    expect(await panel.locator('li[data-user-id]').evaluateAll((els) => els.map((e) => e.getAttribute('data-user-id')))).toEqual([carol.id]);
    expect(await panel.getByRole('button').evaluateAll((els) => els.map((e) => e.textContent?.trim()))).toEqual(['×']);
    expect(await panel.getByRole('textbox').count()).toBe(0);
    expect(await accessibilityViolations(bob.page)).toEqual([]);
    await bob.page.keyboard.press('Escape');
  });

  it('works at phone width: the details cover the screen and close with their button', async () => {
    const { bob } = users;
    await bob.page.setViewportSize({ width: 390, height: 780 });
    await bob.page.getByRole('button', { name: 'Back to conversations' }).click();
    await listItem(bob.page, convoId).click();
    await heading(bob.page).filter({ hasText: title }).waitFor();
    const panel = await openDetails(bob.page);
    const box = await panel.boundingBox();
    expect(box?.width).toBe(390);
    await screenshot(bob.page, '25-members-phone');
    expect(await accessibilityViolations(bob.page)).toEqual([]);
    await panel.getByRole('button', { name: 'Close details' }).click();
    await until('the panel to close', async () => (await details(bob.page).count()) === 0);
    await until('the focus to be back on the members button', () =>
      bob.page.evaluate(() => document.activeElement?.getAttribute('data-testid') === 'members-button'),
    );
  });
});
