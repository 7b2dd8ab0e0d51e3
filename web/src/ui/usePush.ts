import { useEffect, useMemo, useRef } from 'react';
import type { Api } from '../api';
import { HERE_MESSAGE, OPENED_MESSAGE, RESUBSCRIBED_MESSAGE, WHERE_MESSAGE, parseOpenMessage } from '../push/payload';
import { parseRoute } from '../route';
import { PushSubscriber, browserPushEnv } from '../push/subscribe';
import type { NotificationSetting } from './useAttention';

/**
 * Web Push for the logged-in user (src/push/subscribe.ts): subscribed while desktop
 * notifications are on, dropped when they are turned off or blocked, and on logout
 * (`logout`, called before the session goes: the server is told under its token). A
 * notification clicked in the service worker opens its place here, as the page's own
 * links do (`open`), and the worker, before it shows a push, asks which conversation this
 * page shows (none is shown for the conversation in front of the user).
 */
export function usePush(api: Api, userId: string, setting: NotificationSetting, open: (path: string) => void): { logout: () => void } {
  const push = useMemo(() => new PushSubscriber(api, browserPushEnv(), userId), [api, userId]);
  const opener = useRef(open);
  opener.current = open;

  useEffect(() => {
    if (setting === 'on') void push.enable();
    else if (setting !== 'unsupported') void push.disable();
  }, [push, setting]);

  // the session ended elsewhere (another tab logged out, the refresh token was refused)
  useEffect(() => api.onSession((s) => (s === null ? void push.forget() : undefined)), [api, push]);

  useEffect(() => {
    const sw = typeof navigator !== 'undefined' ? navigator.serviceWorker : undefined;
    if (!sw) return;
    const onMessage = (e: MessageEvent) => {
      const data: unknown = e.data;
      const type = typeof data === 'object' && data !== null ? (data as { type?: unknown }).type : undefined;
      if (type === RESUBSCRIBED_MESSAGE) {
        if (setting === 'on') void push.enable();
        return;
      }
      if (type === WHERE_MESSAGE) {
        // a push came: is its conversation in front of the user already?
        const r = parseRoute(window.location.pathname, window.location.search);
        e.ports[0]?.postMessage({
          type: HERE_MESSAGE,
          convo_id: r.kind === 'convo' ? r.id : null,
          visible: document.visibilityState === 'visible',
          focused: document.hasFocus(),
        });
        return;
      }
      const m = parseOpenMessage(data);
      if (!m) return;
      e.ports[0]?.postMessage({ type: OPENED_MESSAGE });
      window.focus();
      opener.current(m.url);
    };
    sw.addEventListener('message', onMessage);
    // the worker's messages wait until the page says it listens
    sw.startMessages();
    return () => sw.removeEventListener('message', onMessage);
  }, [push, setting]);

  return {
    logout: () => {
      void push.disable(api.current?.access_token);
    },
  };
}
