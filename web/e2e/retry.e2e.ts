// A send whose answer is lost with the socket: the page's WebSocket is routed through the
// test (Playwright's routeWebSocket), which swallows the ack and the message.create of one
// message and then cuts the connection. The client must send the message again with the
// same client_msg_id on the next socket, and everyone must see it exactly once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import {
  assertGapFree,
  launch,
  newUserPages,
  openConversation,
  register,
  send,
  shownMessages,
  unique,
  until,
  type UserPage,
  waitConnected,
} from './helpers';

let browser: Browser;
let carol: UserPage;
let dave: UserPage;
const title = unique('retry-');
const lost = 'the answer to this one is lost';
/** client -> server message.send frames of `lost`, as sent */
const sends: string[] = [];
let cutDone = false;
let sockets = 0;

beforeAll(async () => {
  browser = await launch();
  [carol, dave] = await newUserPages(browser, 2);
  await carol.ctx.routeWebSocket(/\/ws(\?|$)/, (ws) => {
    sockets++;
    const server = ws.connectToServer();
    ws.onMessage((m) => {
      if (typeof m === 'string') {
        const f = JSON.parse(m) as { type?: string; content?: string; client_msg_id?: string };
        if (f.type === 'message.send' && f.content === lost) sends.push(f.client_msg_id ?? '');
      }
      server.send(m);
    });
    server.onMessage((m) => {
      if (!cutDone && typeof m === 'string') {
        const f = JSON.parse(m) as { type?: string; client_msg_id?: string; content?: string };
        const ours = sends.length > 0 && f.client_msg_id === sends[0];
        if ((f.type === 'ack' && ours) || (f.type === 'message.create' && ours)) {
          if (f.type === 'ack') {
            // the ack is lost, and so is the connection: as if the network had dropped
            cutDone = true;
            void ws.close({ code: 4000, reason: 'cut by the test' });
            void server.close();
          }
          return;
        }
      }
      ws.send(m);
    });
  });
});

afterAll(async () => {
  await browser?.close();
});

describe('a send whose ack is lost', () => {
  it('is sent again with the same client_msg_id and shown once', async () => {
    await register(carol.page, unique('carol'), 'a long enough password');
    const daveName = unique('dave');
    await register(dave.page, daveName, 'a long enough password');
    await carol.page.getByRole('button', { name: 'New conversation' }).click();
    await carol.page.getByLabel('Title (optional)').fill(title);
    await carol.page.getByLabel('People').fill(daveName);
    await carol.page.getByRole('button', { name: 'Start conversation' }).click();
    await carol.page.getByRole('heading', { name: title }).waitFor();
    await send(carol.page, 'first');
    await until('the first message to be stored', async () => (await shownMessages(carol.page))[0]?.seq === 1);

    await send(carol.page, lost);
    await until('the socket to be cut after the lost ack', () => cutDone);
    await waitConnected(carol.page);
    await until('the lost message to be stored after the retry', async () => {
      const shown = await shownMessages(carol.page);
      return shown.length === 2 && shown[1]?.seq === 2 && shown[1]?.text === lost;
    });
    assertGapFree(await shownMessages(carol.page));
    expect(sockets).toBeGreaterThanOrEqual(2);
    expect(sends.length).toBeGreaterThanOrEqual(2);
    expect(new Set(sends).size).toBe(1); // every attempt with the same client_msg_id

    // dave, and carol after a reload (history), see it once too
    await openConversation(dave.page, title);
    await until('dave to see both messages', async () => (await shownMessages(dave.page)).length === 2);
    expect((await shownMessages(dave.page)).map((m) => [m.seq, m.text])).toEqual([
      [1, 'first'],
      [2, lost],
    ]);
    await carol.page.reload();
    await waitConnected(carol.page);
    await openConversation(carol.page, title);
    await until('carol to see both messages after a reload', async () => (await shownMessages(carol.page)).length === 2);
    expect((await shownMessages(carol.page)).map((m) => [m.seq, m.text])).toEqual([
      [1, 'first'],
      [2, lost],
    ]);
  });
});
