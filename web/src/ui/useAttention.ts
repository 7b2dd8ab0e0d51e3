import { useEffect, useRef, useState } from 'react';
import { previewOf } from '../attachments';
import {
  APP_NAME,
  PLAIN_FAVICON,
  faviconHref,
  notificationText,
  notificationsWanted,
  setNotificationsWanted,
  shouldNotify,
  titleText,
  unreadTotal,
} from '../attention';
import type { ChatClient, ChatState } from '../chat';
import { conversationTag } from '../push/payload';
import { nameOf, titleOf } from './format';

function setFavicon(href: string): void {
  let link = document.querySelector<HTMLLinkElement>('link[rel~="icon"]');
  if (!link) {
    link = document.createElement('link');
    link.rel = 'icon';
    document.head.appendChild(link);
  }
  if (link.getAttribute('href') !== href) link.href = href;
}

export type NotificationSetting = 'unsupported' | 'ask' | 'on' | 'off' | 'blocked';

function permission(): NotificationPermission | null {
  return typeof Notification === 'undefined' ? null : Notification.permission;
}

/**
 * The unread count (of the conversations that are not muted) in the tab's title and as a
 * badge on the favicon; desktop notifications of new messages from others while the tab is
 * hidden, except in muted conversations (a click focuses the window and opens the
 * conversation). The browser's permission is asked only through `enable`, which the user
 * chooses; `setting` says where things stand.
 */
export function useAttention(
  client: ChatClient,
  state: ChatState,
  openConversation: (id: string) => void,
): { setting: NotificationSetting; enable: () => void; toggle: () => void } {
  const unread = unreadTotal(state.conversations);
  useEffect(() => {
    document.title = titleText(unread);
    setFavicon(faviconHref(unread));
  }, [unread]);
  useEffect(
    () => () => {
      document.title = APP_NAME;
      setFavicon(PLAIN_FAVICON);
    },
    [],
  );

  const [perm, setPerm] = useState(permission);
  const [wanted, setWanted] = useState(notificationsWanted);
  const enabled = useRef(false);
  enabled.current = perm === 'granted' && wanted;
  const open = useRef(openConversation);
  open.current = openConversation;

  // the permission may change in the browser's settings meanwhile
  useEffect(() => {
    const check = () => setPerm(permission());
    window.addEventListener('focus', check);
    document.addEventListener('visibilitychange', check);
    return () => {
      window.removeEventListener('focus', check);
      document.removeEventListener('visibilitychange', check);
    };
  }, []);

  useEffect(
    () =>
      client.onIncoming((m, c) => {
        const me = client.getState().me.user_id;
        const hidden = document.visibilityState === 'hidden';
        if (!shouldNotify({ message: m, me, conversation: c, hidden, enabled: enabled.current && permission() === 'granted' })) return;
        const names = client.getState().names;
        const text = notificationText(nameOf(names, m.sender_id), c ? titleOf(c, names, me) : null, c?.kind === 'direct', previewOf(m));
        try {
          // one per conversation at a time (tag, the one Web Push notifications carry too),
          // each new one still announced (renotify, which the DOM typings do not list yet)
          const options: NotificationOptions & { renotify?: boolean } = { body: text.body, tag: conversationTag(m.convo_id), renotify: true };
          const n = new Notification(text.title, options);
          n.onclick = () => {
            window.focus();
            n.close();
            open.current(m.convo_id);
          };
        } catch {
          // a browser that shows notifications from a service worker only: none then
        }
      }),
    [client],
  );

  const setting: NotificationSetting =
    perm === null ? 'unsupported' : perm === 'denied' ? 'blocked' : perm === 'default' ? 'ask' : wanted ? 'on' : 'off';

  return {
    setting,
    enable: () => {
      if (typeof Notification === 'undefined') return;
      void Notification.requestPermission().then((p) => {
        setPerm(p);
        if (p === 'granted') {
          setNotificationsWanted(true);
          setWanted(true);
        }
      });
    },
    toggle: () => {
      setNotificationsWanted(!wanted);
      setWanted(!wanted);
    },
  };
}
