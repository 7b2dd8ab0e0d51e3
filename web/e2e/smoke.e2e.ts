// The page alone, through the ingress: it loads, its form is labelled and usable from the
// keyboard, deep links fall back to the client, and a failed login says why. Passes with or
// without a working API behind the ingress.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { BASE, accessibilityViolations, launch, newUserPage, screenshot, unique } from './helpers';

let browser: Browser;
let page: Page;

beforeAll(async () => {
  browser = await launch();
  page = (await newUserPage(browser)).page;
});

afterAll(async () => {
  await browser?.close();
});

describe('the page', () => {
  it('loads at / and at a deep link', async () => {
    for (const path of ['/', '/some/deep/link']) {
      const res = await page.goto(path);
      expect(res?.status()).toBe(200);
      await page.getByRole('heading', { name: 'Log in' }).waitFor();
    }
  });

  it('can be used from the keyboard: username, password, then log in', async () => {
    await page.goto('/');
    await page.getByRole('heading', { name: 'Log in' }).waitFor();
    // the username field has the focus on load
    expect(await page.evaluate(() => document.activeElement?.getAttribute('name'))).toBe('username');
    await page.keyboard.type(unique('nobody'));
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.getAttribute('name'))).toBe('password');
    await page.keyboard.type('not the password');
    await page.keyboard.press('Enter');
    // no such user, or no API behind the ingress: either way the page says so
    const alert = page.getByRole('alert');
    await alert.waitFor();
    expect(((await alert.textContent()) ?? '').length).toBeGreaterThan(0);
    await screenshot(page, '00-login-error');
  });

  it('refuses an empty form without calling the server', async () => {
    await page.goto('/');
    const calls: string[] = [];
    page.on('request', (r) => {
      if (r.url().startsWith(`${BASE}/auth/`)) calls.push(r.url());
    });
    await page.getByRole('button', { name: 'Log in', exact: true }).click();
    expect(await page.getByRole('alert').textContent()).toBe('Enter a username.');
    expect(calls).toEqual([]);
  });

  it('has no WCAG 2.1 AA violations (axe-core), in light and dark', async () => {
    for (const colorScheme of ['light', 'dark'] as const) {
      await page.emulateMedia({ colorScheme });
      await page.goto('/');
      await page.getByRole('heading', { name: 'Log in' }).waitFor();
      expect(await accessibilityViolations(page), colorScheme).toEqual([]);
      await page.getByRole('button', { name: 'Create an account' }).click();
      await page.getByRole('button', { name: 'Create an account', exact: true }).click(); // empty: an error shows
      await page.getByRole('alert').waitFor();
      expect(await accessibilityViolations(page), colorScheme).toEqual([]);
    }
    await page.emulateMedia({ colorScheme: 'light' });
  });

  it('keeps /metrics off the ingress', async () => {
    const res = await page.request.get('/metrics');
    expect(res.status()).toBe(404);
  });
});
