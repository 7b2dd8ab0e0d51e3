// Attachments through the real stack: alice attaches files three ways (the picker, a drop on
// the conversation, a paste into the composer), watches them upload straight to the object
// store and sends them; bob, a member, sees the images inline and downloads the file; eve,
// who is not a member, gets a 404 for the same attachment. A cancelled upload leaves the
// composer; a refused type says why in the server's words.
import { randomBytes } from 'node:crypto';
import { deflateSync, crc32 } from 'node:zlib';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Locator, Page } from 'playwright-core';
import {
  accessibilityViolations,
  ARTIFACTS,
  launch,
  newUserPages,
  openConversation,
  openConvoId,
  registerAll,
  screenshot,
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
let e: UserPage;
const alice = unique('alice');
const bob = unique('bob');
const eve = unique('eve');
const password = 'correct horse battery staple';
const title = unique('files-');
const caption = 'the photo, a small one and the report';
let convoId = '';

/** A PNG of w by h pixels, each [r, g, b] = pixel(x, y). */
function png(w: number, h: number, pixel: (x: number, y: number) => [number, number, number]): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.writeUInt8(8, 8); // bit depth
  ihdr.writeUInt8(2, 9); // RGB
  const rows: Buffer[] = [];
  for (let y = 0; y < h; y++) {
    const row = Buffer.alloc(1 + w * 3); // filter byte 0, then the pixels
    for (let x = 0; x < w; x++) row.set(pixel(x, y).map((v) => Math.max(0, Math.min(255, Math.round(v)))), 1 + x * 3);
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.concat(rows), { level: 1 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const grain = randomBytes(900 * 600);
/** A sunset over the sea, with film grain: the grain keeps it from compressing, so that it
 * takes a moment to upload (about 1.3 MB). */
const photo = png(900, 600, (x, y) => {
  const n = (grain[y * 900 + x] ?? 0) / 8 - 16;
  const sun = Math.hypot(x - 600, y - 330) < 70;
  if (y < 340) {
    const t = y / 340;
    return sun ? [255 + n, 214 + n, 120 + n] : [60 + 190 * t + n, 40 + 100 * t + n, 110 - 40 * t + n];
  }
  const t = (y - 340) / 260;
  const glow = Math.abs(x - 600) < 90 - 60 * t && (y >> 2) % 3 !== 0;
  return glow ? [240 + n, 170 + n, 90 + n] : [30 + 20 * (1 - t) + n, 60 + 30 * (1 - t) + n, 110 + 40 * (1 - t) + n];
});
/** Green hills under a pale sky. */
const small = png(120, 80, (x, y) =>
  y > 50 + 12 * Math.sin(x / 14) ? [70, 140 - (y - 50), 60] : [190 + y / 2, 220, 240],
);
const report = Buffer.concat([Buffer.from('%PDF-1.4\n% a report\n'), randomBytes(48 * 1024), Buffer.from('\n%%EOF\n')]);

function composer(page: Page): Locator {
  return page.getByRole('textbox', { name: 'Message' });
}

function chip(page: Page, name: string): Locator {
  return page.getByTestId('uploads').locator(`li[data-name="${name}"]`);
}

function sendButton(page: Page): Locator {
  return page.getByRole('button', { name: 'Send', exact: true });
}

function bubble(page: Page, seq: number): Locator {
  return page.getByTestId('messages').locator(`li.bubble[data-seq="${seq}"]`);
}

/** A File in the page, in a DataTransfer (as a drop or a paste carries it). */
async function dataTransfer(page: Page, name: string, type: string, data: Buffer) {
  return page.evaluateHandle(
    ({ name, type, b64 }) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], name, { type }));
      return dt;
    },
    { name, type, b64: data.toString('base64') },
  );
}

/** GET /conversations/{id}/attachments/{att_id} from the page, with its user's token: the
 * status and the body. */
async function linksFrom(page: Page, convo: string, att: string): Promise<{ status: number; body: { url?: string; thumb_url?: string | null } }> {
  return page.evaluate(
    async ({ convo, att }) => {
      const s = JSON.parse(localStorage.getItem('kchat.session') ?? '{}') as { access_token?: string };
      const r = await fetch(`/conversations/${encodeURIComponent(convo)}/attachments/${encodeURIComponent(att)}`, {
        headers: { Authorization: `Bearer ${s.access_token ?? ''}` },
      });
      return { status: r.status, body: (await r.json()) as { url?: string; thumb_url?: string | null } };
    },
    { convo, att },
  );
}

async function lastSeq(page: Page): Promise<number> {
  return (await shownMessages(page)).filter((m) => m.seq !== null).at(-1)?.seq ?? 0;
}

beforeAll(async () => {
  browser = await launch();
  [a, b, e] = await newUserPages(browser, 3);
});

afterAll(async () => {
  await browser?.close();
});

skipAfterFirstFailure();

describe('attachments', () => {
  it('alice, bob and eve register; alice starts a conversation with bob', async () => {
    await registerAll(password, [a.page, alice], [b.page, bob], [e.page, eve]);
    await startConversation(a.page, title, [bob]);
    convoId = await openConvoId(a.page);
    await until('bob to have the conversation', async () => (await b.page.getByTestId('conversation-list').getByText(title).count()) > 0);
    await openConversation(b.page, title);
  });

  it('alice attaches an image with the picker and watches it upload', async () => {
    // a slow uplink, so that the transfer takes a few seconds
    const cdp = await a.ctx.newCDPSession(a.page);
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 400 * 1024 });
    const seen: number[] = [];
    await a.page.getByLabel('Choose files to attach').setInputFiles({ name: 'photo.png', mimeType: 'image/png', buffer: photo });
    const c = chip(a.page, 'photo.png');
    await c.waitFor();
    // nothing to send while it uploads
    expect(await sendButton(a.page).isDisabled()).toBe(true);
    let shot = false;
    await until(
      'the photo to upload',
      async () => {
        const phase = await c.getAttribute('data-phase');
        const bar = c.getByTestId('upload-progress');
        if (phase === 'uploading' && (await bar.count()) > 0) {
          const v = Number((await bar.getAttribute('value')) ?? '0');
          seen.push(v);
          if (!shot && v >= 20 && v < 90) {
            shot = true;
            await screenshot(a.page, '16-upload-progress');
          }
        }
        return phase === 'done';
      },
      60_000,
    );
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await cdp.detach();
    expect(seen.some((v) => v > 0 && v < 100), `progress seen: ${JSON.stringify(seen)}`).toBe(true);
    if (!shot) await screenshot(a.page, '16-upload-progress');
    // ready: it alone may go, without text
    expect(await sendButton(a.page).isDisabled()).toBe(false);
  });

  it('alice drops a PDF on the conversation and pastes an image into the composer', async () => {
    const dt = await dataTransfer(a.page, 'report.pdf', 'application/pdf', report);
    const convo = a.page.getByTestId('conversation');
    await convo.dispatchEvent('dragenter', { dataTransfer: dt });
    await convo.dispatchEvent('dragover', { dataTransfer: dt });
    await convo.dispatchEvent('drop', { dataTransfer: dt });
    await chip(a.page, 'report.pdf').waitFor();
    const clip = await dataTransfer(a.page, 'pasted.png', 'image/png', small);
    await composer(a.page).evaluate((el, data) => {
      el.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data as DataTransfer, bubbles: true, cancelable: true }));
    }, clip);
    await chip(a.page, 'pasted.png').waitFor();
    for (const name of ['report.pdf', 'pasted.png']) {
      await until(`${name} to upload`, async () => (await chip(a.page, name).getAttribute('data-phase')) === 'done');
    }
    expect(await a.page.getByTestId('uploads').locator('li').count()).toBe(3);
    expect(await accessibilityViolations(a.page)).toEqual([]);
  });

  it('alice sends them with a caption; bob sees the images inline and the file card', async () => {
    await composer(a.page).fill(caption);
    await sendButton(a.page).click();
    // the composer is empty again
    await until('the composer to empty', async () => (await a.page.getByTestId('uploads').count()) === 0);
    await until('alice\'s message to be stored', async () => {
      const last = (await shownMessages(a.page)).at(-1);
      return last?.text === caption && last.seq !== null;
    });
    const seq = await lastSeq(a.page);
    await until('bob to show the message', async () => (await bubble(b.page, seq).count()) === 1);
    const msg = bubble(b.page, seq);
    await expect(msg.locator('.content').textContent()).resolves.toBe(caption);
    // both images load: their thumbnails, within the room kept for them
    const images = msg.locator('[data-testid="attachment-image"] img');
    await until('the two images to load', async () => {
      if ((await images.count()) !== 2) return false;
      const widths = await images.evaluateAll((els) => els.map((el) => (el as HTMLImageElement).complete && (el as HTMLImageElement).naturalWidth));
      return widths.every((w) => typeof w === 'number' && w > 0);
    });
    expect(await images.evaluateAll((els) => els.map((el) => el.getAttribute('alt')))).toEqual(['photo.png', 'pasted.png']);
    const box = await images.first().boundingBox();
    expect(box?.width).toBeCloseTo(240, 0);
    expect(Math.abs((box?.height ?? 0) - 160)).toBeLessThan(1);
    // the file: a card with its name, type and size, a link to it
    const card = msg.getByRole('link', { name: /report\.pdf/ });
    await card.waitFor();
    expect(await card.textContent()).toContain('PDF · 48 KB');
    expect(await card.getAttribute('target')).toBe('_blank');
    expect(await card.getAttribute('rel')).toBe('noopener noreferrer');
    const href = (await card.getAttribute('href')) ?? '';
    const got = Buffer.from(await (await fetch(href)).arrayBuffer());
    expect(got.equals(report)).toBe(true);
    await screenshot(b.page, '17-attachments');
    await msg.screenshot({ path: join(ARTIFACTS, '18-file-card.png') });
    expect(await accessibilityViolations(b.page)).toEqual([]);
    // the image opens in full in a new tab
    const [tab] = await Promise.all([b.ctx.waitForEvent('page'), images.first().click()]);
    await tab.waitForLoadState();
    expect(new URL(tab.url()).pathname).toContain('/f/photo.png');
    await tab.close();
    // alice's own message shows them too (from her ack, then the history)
    await until('alice to show the images', async () => (await bubble(a.page, seq).locator('[data-testid="attachment-image"] img').count()) === 2);
  });

  it('eve, who is not a member, gets a 404 for the same attachment; bob gets its URLs', async () => {
    const seq = await lastSeq(b.page);
    const ids = await bubble(b.page, seq)
      .locator('[data-attachment-id]')
      .evaluateAll((els) => els.map((el) => el.getAttribute('data-attachment-id') ?? ''));
    expect(ids).toHaveLength(3);
    for (const id of ids) {
      const mine = await linksFrom(b.page, convoId, id);
      expect(mine.status).toBe(200);
      expect(mine.body.url).toMatch(/^https?:\/\//);
      const theirs = await linksFrom(e.page, convoId, id);
      expect(theirs.status).toBe(404);
    }
  });

  it('a message of files only shows no empty text', async () => {
    await a.page.getByLabel('Choose files to attach').setInputFiles({ name: 'only.png', mimeType: 'image/png', buffer: small });
    await until('only.png to upload', async () => (await chip(a.page, 'only.png').getAttribute('data-phase')) === 'done');
    const before = await lastSeq(b.page); // read before sending: bob may show it at once
    await sendButton(a.page).click();
    await until('bob to show it', async () => (await lastSeq(b.page)) > before);
    const msg = bubble(b.page, await lastSeq(b.page));
    await msg.locator('[data-testid="attachment-image"]').waitFor();
    expect(await msg.locator('.content').count()).toBe(0);
    // the list says what came
    await until('the list to name the file', async () => ((await a.page.getByTestId('conversation-list').textContent()) ?? '').includes('only.png'));
  });

  it('cancelling an upload in progress removes it', async () => {
    const held: { abort: () => Promise<void> }[] = [];
    const store = (u: URL) => u.pathname.includes('/attachments/') && u.pathname.includes('/f/held.bin');
    await a.page.route(store, (route) => {
      held.push(route); // never answered: the upload hangs until cancelled
    });
    await a.page.getByLabel('Choose files to attach').setInputFiles({ name: 'held.bin', mimeType: 'application/octet-stream', buffer: randomBytes(64 * 1024) });
    const c = chip(a.page, 'held.bin');
    await until('the upload to start', async () => (await c.getAttribute('data-phase')) === 'uploading' && held.length > 0);
    expect(await sendButton(a.page).isDisabled()).toBe(true);
    await a.page.getByRole('button', { name: 'Cancel upload of held.bin' }).click();
    await until('the chip to go', async () => (await c.count()) === 0);
    expect(await a.page.getByTestId('upload-errors').count()).toBe(0);
    for (const r of held) await r.abort().catch(() => undefined);
    await a.page.unroute(store);
  });

  it('a refused type says why, in the server\'s words', async () => {
    await a.page.getByLabel('Choose files to attach').setInputFiles({ name: 'page.html', mimeType: 'text/html', buffer: Buffer.from('<!doctype html><p>hi</p>') });
    const errors = a.page.getByTestId('upload-errors');
    await errors.waitFor();
    expect(await errors.textContent()).toContain('“page.html” was not attached: this media type is not accepted for attachments.');
    expect(await chip(a.page, 'page.html').count()).toBe(0);
    expect(await accessibilityViolations(a.page)).toEqual([]);
    await a.page.getByRole('button', { name: 'Dismiss' }).click();
    expect(await errors.count()).toBe(0);
  });

  it('a deleted message shows no attachments, and its files are gone for members too', async () => {
    const seq = await lastSeq(a.page);
    const id = (await bubble(b.page, seq).locator('[data-attachment-id]').first().getAttribute('data-attachment-id')) ?? '';
    await bubble(a.page, seq).getByRole('button', { name: 'Delete message' }).click();
    await bubble(a.page, seq).getByRole('button', { name: 'Yes, delete' }).click();
    await until('bob to show it deleted', async () => ((await bubble(b.page, seq).textContent()) ?? '').includes('This message was deleted.'));
    expect(await bubble(b.page, seq).locator('[data-testid="attachments"]').count()).toBe(0);
    expect(await bubble(a.page, seq).locator('[data-testid="attachments"]').count()).toBe(0);
    await until('the file to be refused to bob', async () => (await linksFrom(b.page, convoId, id)).status === 404);
  });
});
