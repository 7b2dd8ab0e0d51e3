// Helpers of the end-to-end tests: a real Chromium (playwright-core driving Debian's
// /usr/bin/chromium, headless) against a kchat behind its ingress.
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { afterEach, beforeEach } from 'vitest';

export const BASE = (process.env.KCHAT_E2E_BASE_URL ?? '').replace(/\/+$/, '');
export const ARTIFACTS = process.env.KCHAT_E2E_ARTIFACTS ?? join(process.cwd(), 'e2e', 'artifacts');
const CHROMIUM = process.env.KCHAT_CHROMIUM ?? '/usr/bin/chromium';

export async function launch(): Promise<Browser> {
  if (!BASE) throw new Error('KCHAT_E2E_BASE_URL is not set: run the tests with `npm run e2e -- <base URL>`');
  const args = ['--disable-dev-shm-usage'];
  // Chromium refuses to run as root with its sandbox (CI runs as root)
  if (typeof process.getuid === 'function' && process.getuid() === 0) args.push('--no-sandbox');
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args });
}

export async function newUserPage(browser: Browser, viewport = { width: 1200, height: 800 }): Promise<{ ctx: BrowserContext; page: Page }> {
  const ctx = await browser.newContext({ baseURL: BASE, viewport, ignoreHTTPSErrors: true });
  const page = await ctx.newPage();
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));
  return { ctx, page };
}

/** A user's browser context (its own storage, session and socket) and page. */
export interface UserPage {
  ctx: BrowserContext;
  page: Page;
}

/** A page for each of `n` users, each in a browser context of its own (newUserPage). */
export async function newUserPages(browser: Browser, n: 2): Promise<[UserPage, UserPage]>;
export async function newUserPages(browser: Browser, n: 3): Promise<[UserPage, UserPage, UserPage]>;
export async function newUserPages(browser: Browser, n: 4): Promise<[UserPage, UserPage, UserPage, UserPage]>;
export async function newUserPages(browser: Browser, n: number): Promise<UserPage[]> {
  const out: UserPage[] = [];
  for (let i = 0; i < n; i++) out.push(await newUserPage(browser));
  return out;
}

/** Registers each [page, username] in turn through the UI (register): their user ids, in the
 * same order. */
export async function registerAll<T extends readonly (readonly [Page, string])[]>(password: string, ...users: T): Promise<{ -readonly [K in keyof T]: string }> {
  const ids: string[] = [];
  for (const [page, name] of users) ids.push(await register(page, name, password));
  return ids as { -readonly [K in keyof T]: string };
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
}

/** Polls `fn` until it returns true; fails with `what` and the last value otherwise. */
export async function until(what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      if (await fn()) return;
      last = false;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${String(last)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function unique(prefix: string): string {
  return `${prefix}${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
}

/** Registers through the UI and waits for the chat screen with a live connection. */
export async function register(page: Page, username: string, password: string): Promise<string> {
  await page.goto('/');
  await page.getByRole('button', { name: 'Create an account' }).click();
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Create an account', exact: true }).click();
  await waitConnected(page);
  const id = await page.getByTestId('my-user-id').getAttribute('data-user-id');
  if (!id) throw new Error('no user id on the page');
  return id;
}

export async function waitConnected(page: Page): Promise<void> {
  await until('the socket to be connected', async () => (await page.getByTestId('connection').textContent())?.includes('Connected') ?? false);
}

/** Opens a conversation from the list by its title. */
export async function openConversation(page: Page, title: string): Promise<void> {
  await page.getByTestId('conversation-list').getByRole('button', { name: new RegExp(escapeRe(title)) }).click();
  await page.getByRole('heading', { name: title }).waitFor();
}

export function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export async function send(page: Page, text: string): Promise<void> {
  const box = page.getByRole('textbox', { name: 'Message' });
  await box.fill(text);
  await box.press('Enter');
}

export interface ShownMessage {
  seq: number | null;
  text: string;
  pending: string | null;
  tick: string | null;
}

/** The conversation's bubbles as shown, top to bottom. */
export async function shownMessages(page: Page): Promise<ShownMessage[]> {
  return page.getByTestId('messages').locator('li.bubble').evaluateAll((els) =>
    els.map((el) => ({
      seq: el.getAttribute('data-seq') === null ? null : Number(el.getAttribute('data-seq')),
      text: el.querySelector('.content')?.textContent ?? '',
      pending: el.getAttribute('data-pending'),
      tick: el.querySelector('[data-tick]')?.getAttribute('data-tick') ?? null,
    })),
  );
}

/** Every shown message is a stored one, seq_no 1..n in order, none twice. */
export function assertGapFree(shown: ShownMessage[]): void {
  const seqs = shown.map((m) => m.seq);
  const want = shown.map((_, i) => i + 1);
  if (JSON.stringify(seqs) !== JSON.stringify(want)) {
    throw new Error(`messages are not seq 1..${shown.length} in order: ${JSON.stringify(seqs)}`);
  }
}

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: unknown[] }[];
}

/**
 * The WCAG 2.1 A and AA violations axe-core finds on the page as it is now (contrast,
 * labels, roles, names, landmarks...), one line each; empty when there is none.
 */
export async function accessibilityViolations(page: Page): Promise<string[]> {
  await page.evaluate(AXE_SOURCE); // through the debugger protocol: the page's CSP allows no inline script
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run: (ctx: Document, opts: unknown) => Promise<{ violations: AxeViolation[] }> } }).axe;
    const r = await axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => ({ target: n.target })) }));
  });
  return violations.map((v) => `${v.id} (${v.impact ?? '?'}): ${v.help} at ${v.nodes.map((n) => JSON.stringify(n.target)).join(', ')}`);
}

/** Starts a conversation from the New conversation form and waits for its heading. */
export async function startConversation(page: Page, title: string, people: string[]): Promise<void> {
  await page.getByRole('button', { name: 'New conversation' }).click();
  await page.getByLabel('Title (optional)').fill(title);
  await page.getByLabel('People').fill(people.join(', '));
  await page.getByRole('button', { name: 'Start conversation' }).click();
  await page.getByRole('heading', { name: title, exact: true }).waitFor();
}

/** The conversation's entry in the list, by id. */
export function listItem(page: Page, convoId: string): Locator {
  return page.getByTestId('conversation-list').locator(`[data-convo-id="${convoId}"]`);
}

/** The id of the conversation open on the page (its entry in the list is the current one). */
export async function openConvoId(page: Page): Promise<string> {
  const id = await page.getByTestId('conversation-list').locator('[aria-current="true"]').getAttribute('data-convo-id');
  if (!id) throw new Error('no open conversation');
  return id;
}

/** The open conversation's details dialog (members, title, topic). */
export function details(page: Page): Locator {
  return page.getByRole('dialog', { name: 'Conversation details' });
}

/** Opens the details of the open conversation. */
export async function openDetails(page: Page): Promise<Locator> {
  await page.getByTestId('members-button').click();
  const d = details(page);
  await d.waitFor();
  return d;
}

/** A member's row in the details dialog. */
export function memberRow(page: Page, userId: string): Locator {
  return details(page).locator(`li[data-user-id="${userId}"]`);
}

/** For a file whose tests build on the ones before: after a failure the rest are skipped, not
 * failed again for the same cause. Call once at the top level of the file. */
export function skipAfterFirstFailure(): void {
  let broken = false;
  beforeEach((ctx) => {
    if (broken) ctx.skip();
  });
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') broken = true;
  });
}

/** What a page's desktop notifications said, in order (captured by newWatchedUserPage). */
export interface ShownNotification {
  title: string;
  body: string;
}

/**
 * A user's page whose desktop notifications are captured instead of relying on the desktop,
 * and whose visibility the test sets (setHidden): an init script wraps window.Notification
 * and overrides document.visibilityState and document.hidden. With `grant` the browser
 * context allows notifications (context.grantPermissions), as if the user had said yes
 * before.
 */
export async function newWatchedUserPage(browser: Browser, grant = true): Promise<{ ctx: BrowserContext; page: Page }> {
  const ctx = await browser.newContext({ baseURL: BASE, viewport: { width: 1200, height: 800 }, ignoreHTTPSErrors: true });
  if (grant) await ctx.grantPermissions(['notifications'], { origin: BASE });
  await ctx.addInitScript(() => {
    const w = window as unknown as {
      Notification: typeof Notification;
      __kchatNotes: { title: string; body: string; n: Notification | null }[];
      __kchatPermissionAsks: number;
      __kchatSetHidden: (hidden: boolean) => void;
    };
    w.__kchatNotes = [];
    w.__kchatPermissionAsks = 0;
    let hidden = false;
    Object.defineProperty(Document.prototype, 'visibilityState', { configurable: true, get: () => (hidden ? 'hidden' : 'visible') });
    Object.defineProperty(Document.prototype, 'hidden', { configurable: true, get: () => hidden });
    w.__kchatSetHidden = (h: boolean) => {
      hidden = h;
      document.dispatchEvent(new Event('visibilitychange'));
    };
    const Original = w.Notification;
    if (typeof Original !== 'function') return;
    class Watched extends Original {
      constructor(title: string, options?: NotificationOptions) {
        const note: { title: string; body: string; n: Notification | null } = { title, body: options?.body ?? '', n: null };
        w.__kchatNotes.push(note);
        super(title, options);
        note.n = this;
      }
      static override requestPermission(cb?: NotificationPermissionCallback): Promise<NotificationPermission> {
        w.__kchatPermissionAsks++;
        return Original.requestPermission(cb);
      }
    }
    w.Notification = Watched;
  });
  const page = await ctx.newPage();
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));
  return { ctx, page };
}

/** Makes the page say it is hidden (or visible again), as when its tab is in the background. */
export async function setHidden(page: Page, hidden: boolean): Promise<void> {
  await page.evaluate((h) => (window as unknown as { __kchatSetHidden: (h: boolean) => void }).__kchatSetHidden(h), hidden);
}

/** The desktop notifications the page raised so far. */
export async function notifications(page: Page): Promise<ShownNotification[]> {
  return page.evaluate(() =>
    (window as unknown as { __kchatNotes: { title: string; body: string }[] }).__kchatNotes.map(({ title, body }) => ({ title, body })),
  );
}

/** Clicks the page's notification number `i` (as the desktop would). */
export async function clickNotification(page: Page, i: number): Promise<void> {
  await page.evaluate((k) => {
    const n = (window as unknown as { __kchatNotes: { n: Notification | null }[] }).__kchatNotes[k]?.n;
    if (!n) throw new Error(`no notification ${k}`);
    n.dispatchEvent(new Event('click'));
  }, i);
}

/** How many times the page asked the browser for the notification permission. */
export async function permissionAsks(page: Page): Promise<number> {
  return page.evaluate(() => (window as unknown as { __kchatPermissionAsks: number }).__kchatPermissionAsks);
}

/** The path (and query) of the page's address. */
export function pathOf(page: Page): string {
  const u = new URL(page.url());
  return u.pathname + u.search;
}
