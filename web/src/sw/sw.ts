/// <reference lib="webworker" />
// kchat's service worker, served as /sw.js with the scope "/" (built by the plugin in
// vite.config.ts as one classic script; type-checked with tsconfig.sw.json). It does two
// things only, and has no fetch handler, so it never stands between the page and the
// network and caches nothing:
//
// - push: kchat-notifier's Web Push for a member with no connection shows a notification,
//   one per conversation (its tag), each new one announced again (renotify). What it says
//   comes from src/push/payload.ts; a payload it cannot read still shows "New messages".
//   None is shown when a window that has the focus shows that conversation already (the
//   focused windows are asked which conversation they show; one that does not answer in
//   0.5 s counts as showing none).
// - notificationclick: the notification's place (/c/<id>/m/<seq>) opens in a window of
//   this client: the focused one, else a visible one, else any, brought forward and asked to
//   go there as its own links do (no reload); a window that does not answer is navigated;
//   with no window, a new one opens there.
//
// pushsubscriptionchange: the browser replaced (or dropped) the subscription. The worker
// subscribes again with the same key; handing the new one to the server needs the user's
// access token, which only the page has (localStorage), so the open windows are told to do
// it now, and any page of the client does it when it next loads (src/push/subscribe.ts).

import {
  OPENED_MESSAGE,
  OPEN_MESSAGE,
  RESUBSCRIBED_MESSAGE,
  WHERE_MESSAGE,
  notificationData,
  notificationForPayload,
  parseHere,
  parsePushPayload,
  pickWindow,
  seenAlready,
  type WindowView,
} from '../push/payload';

declare const self: ServiceWorkerGlobalScope;

/** How long a window has to say it opened the place before it is navigated instead. */
const OPEN_ANSWER_MS = 1500;
/** How long a focused window has to say what it shows before the push is shown anyway. */
const WHERE_ANSWER_MS = 500;

self.addEventListener('install', () => {
  // nothing to cache: a new version takes over at once
  void self.skipWaiting();
});

self.addEventListener('activate', (event) => {
  // the pages open already get their notification clicks through this worker too
  event.waitUntil(self.clients.claim());
});

function windows(): Promise<readonly WindowClient[]> {
  return self.clients.matchAll({ type: 'window', includeUncontrolled: true });
}

/** Posts a message to a window with a port for its answer: the answer, or null when none
 * came in time (a page of an older client, a logged-out one, a frozen one). */
function ask(w: WindowClient, message: unknown, ms: number): Promise<unknown> {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    const timer = setTimeout(() => {
      channel.port1.close();
      resolve(null);
    }, ms);
    channel.port1.onmessage = (e: MessageEvent) => {
      clearTimeout(timer);
      channel.port1.close();
      resolve(e.data);
    };
    try {
      w.postMessage(message, [channel.port2]);
    } catch {
      clearTimeout(timer);
      resolve(null);
    }
  });
}

/** What the focused, visible windows show, as they say. */
async function views(): Promise<WindowView[]> {
  const focused = (await windows()).filter((w) => w.focused && w.visibilityState === 'visible');
  const answers = await Promise.all(focused.map((w) => ask(w, { type: WHERE_MESSAGE }, WHERE_ANSWER_MS)));
  return answers.map(parseHere).filter((v): v is WindowView => v !== null);
}

/** Shows the notification of a push's payload (its text, or null without one). */
async function onPush(text: string | null): Promise<void> {
  const spec = notificationForPayload(text);
  const m = parsePushPayload(text);
  try {
    if (m?.convo_id && seenAlready(m, await views())) return;
  } catch {
    // cannot tell: show it
  }
  // renotify is not in the DOM typings yet
  const options: NotificationOptions & { renotify?: boolean } = spec.options;
  await self.registration.showNotification(spec.title, options);
}

/** A click on a notification: it closes and its place opens in a window of the client. */
async function onNotificationClick(notification: Notification): Promise<void> {
  notification.close();
  const { url: path } = notificationData(notification.data);
  const url = new URL(path, self.location.origin).href;
  const w = pickWindow(await windows());
  if (!w) {
    await self.clients.openWindow(url);
    return;
  }
  try {
    await w.focus();
  } catch {
    // focusing needs the click's user activation; without it the window still moves
  }
  const answer = await ask(w, { type: OPEN_MESSAGE, url: path }, OPEN_ANSWER_MS);
  if (typeof answer === 'object' && answer !== null && (answer as { type?: unknown }).type === OPENED_MESSAGE) return;
  try {
    // only a window this worker controls can be navigated (every one after claim())
    await w.navigate(url);
    return;
  } catch {
    // not controlled: open one
  }
  await self.clients.openWindow(url);
}

/** The browser replaced the subscription: subscribe again with the same options and have
 * the open windows hand it to the server. */
async function onSubscriptionChange(event: PushSubscriptionChangeEvent): Promise<void> {
  try {
    let sub = event.newSubscription ?? (await self.registration.pushManager.getSubscription());
    const key = event.oldSubscription?.options.applicationServerKey;
    if (!sub && key) sub = await self.registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
    if (!sub) return; // no key to subscribe with: the page subscribes when it next loads
    for (const w of await windows()) w.postMessage({ type: RESUBSCRIBED_MESSAGE });
  } catch {
    // best effort: the page subscribes again when it next loads
  }
}

self.addEventListener('push', (event) => {
  let text: string | null = null;
  try {
    text = event.data ? event.data.text() : null;
  } catch {
    text = null;
  }
  event.waitUntil(onPush(text));
});

self.addEventListener('notificationclick', (event) => {
  event.waitUntil(onNotificationClick(event.notification));
});

self.addEventListener('pushsubscriptionchange', (event) => {
  event.waitUntil(onSubscriptionChange(event));
});

// The handlers, reachable from DevTools and from the end-to-end test (web/e2e/push.e2e.ts):
// a test can deliver a push to the worker, but cannot click a notification, so it calls the
// click handler with the shown notification instead.
(self as unknown as { kchat: unknown }).kchat = { onPush, onNotificationClick };
