// Web Push from the page's side: the service worker (/sw.js) is registered and the browser
// subscribed to push with the server's VAPID key, and the subscription handed to kchat-api,
// so kchat-notifier can reach this browser while no tab of it is connected.
//
//   GET /push/vapid-public-key   -> {public_key}: base64url (no padding) of the 65-byte
//                                   uncompressed P-256 point; 503 when push is not set up
//   POST /push/subscriptions {endpoint, keys: {p256dh, auth}} -> 201 {id} (200 when known)
//   DELETE /push/subscriptions/{id} -> 204
//
// Push rides on the desktop-notifications setting (ui/useAttention.ts): on while the browser
// allows notifications and the user has not turned them off here; turned off, blocked, or on
// logout, the server forgets the subscription and the browser drops it. Nothing here ever
// shows an error: a browser without Push, a server without it (503, or 404 from a server
// that predates it) or a push service that refuses (headless Chromium does) leave the page
// as it was, with at most a console warning. The page's own notifications stay as they are:
// the server pushes only to members with no connection, the page notifies only while it
// has one.
//
// The browser objects are reached through PushEnv, so the flow is unit-tested with fakes
// (subscribe.test.ts); browserPushEnv() is the real one.

/** The worker's script, served from the site's root so that its scope can be all of it. */
export const SW_URL = '/sw.js';
export const SW_SCOPE = '/';
/** What is remembered of this browser's subscription (localStorage). */
export const RECORD_KEY = 'kchat.push';
const WAIT_MS = 15_000;

/** The body of POST /push/subscriptions. */
export interface SubscriptionBody {
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

/** The server's side of it (Api). */
export interface PushApi {
  /** the VAPID public key, or null when the server has no push (503, 404) */
  pushPublicKey(): Promise<string | null>;
  /** the subscription's id on the server */
  addPushSubscription(body: SubscriptionBody): Promise<string>;
  /** with `token`, under that access token rather than the session's (logging out) */
  deletePushSubscription(id: string, token?: string): Promise<void>;
}

/** The parts of a PushSubscription used here. */
export interface SubscriptionLike {
  readonly endpoint: string;
  readonly options?: { readonly applicationServerKey: ArrayBuffer | null } | undefined;
  toJSON(): unknown;
  unsubscribe(): Promise<boolean>;
}

export interface RegistrationLike {
  readonly pushManager: {
    getSubscription(): Promise<SubscriptionLike | null>;
    subscribe(o: { userVisibleOnly: boolean; applicationServerKey: Uint8Array<ArrayBuffer> }): Promise<SubscriptionLike>;
  };
}

export interface StorageLike {
  getItem(k: string): string | null;
  setItem(k: string, v: string): void;
  removeItem(k: string): void;
}

export interface PushEnv {
  /** whether the browser has service workers and Push */
  supported: boolean;
  /** registers the worker (or finds it) and resolves once it is active */
  register(): Promise<RegistrationLike>;
  /** the worker's registration if there is one, without registering it */
  existing(): Promise<RegistrationLike | null>;
  storage: StorageLike | null;
  warn(message: string): void;
  /** how long a browser call may take before it counts as failed */
  waitMs?: number;
}

/** What this browser's subscription is (RECORD_KEY): whose, its id on the server and its
 * endpoint. */
export interface PushRecord {
  user_id: string;
  id: string;
  endpoint: string;
}

export type PushStatus =
  /** no service workers or no Push in this browser */
  | 'unsupported'
  /** the server has no push (no key) */
  | 'unavailable'
  /** something failed on the way (a warning says what) */
  | 'failed'
  | 'subscribed';

/** The bytes of a base64url (or base64) string, padded or not; null when it is not one. */
export function base64UrlBytes(s: string): Uint8Array<ArrayBuffer> | null {
  const t = s.trim().replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '');
  if (!/^[A-Za-z0-9+/]*$/.test(t) || t.length % 4 === 1) return null;
  let bin: string;
  try {
    bin = atob(t + '='.repeat((4 - (t.length % 4)) % 4));
  } catch {
    return null;
  }
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** The server's VAPID public key as `applicationServerKey` takes it: the 65 bytes of an
 * uncompressed P-256 point (0x04, X, Y), or null when the key is not one. */
export function vapidKeyBytes(key: string): Uint8Array<ArrayBuffer> | null {
  const b = base64UrlBytes(key);
  return b && b.length === 65 && b[0] === 4 ? b : null;
}

/** Whether a subscription was made with this key; a browser that does not say is believed. */
export function sameKey(held: ArrayBuffer | null | undefined, key: Uint8Array): boolean {
  if (!held) return true;
  const a = new Uint8Array(held);
  return a.length === key.length && a.every((x, i) => x === key[i]);
}

/** A subscription's JSON (PushSubscription.toJSON()) as POST /push/subscriptions takes it,
 * or null when it lacks a part: an http(s) endpoint and both keys. */
export function subscriptionBody(json: unknown): SubscriptionBody | null {
  if (typeof json !== 'object' || json === null) return null;
  const { endpoint, keys } = json as { endpoint?: unknown; keys?: unknown };
  if (typeof endpoint !== 'string' || !/^https?:\/\/\S+$/.test(endpoint)) return null;
  if (typeof keys !== 'object' || keys === null) return null;
  const { p256dh, auth } = keys as { p256dh?: unknown; auth?: unknown };
  if (typeof p256dh !== 'string' || typeof auth !== 'string' || !p256dh || !auth) return null;
  if (!base64UrlBytes(p256dh) || !base64UrlBytes(auth)) return null;
  return { endpoint, keys: { p256dh, auth } };
}

export function loadRecord(storage: StorageLike | null): PushRecord | null {
  try {
    const raw = storage?.getItem(RECORD_KEY);
    if (!raw) return null;
    const v = JSON.parse(raw) as Partial<PushRecord> | null;
    if (!v || typeof v.user_id !== 'string' || typeof v.id !== 'string' || typeof v.endpoint !== 'string') return null;
    return { user_id: v.user_id, id: v.id, endpoint: v.endpoint };
  } catch {
    return null;
  }
}

function saveRecord(storage: StorageLike | null, r: PushRecord | null): void {
  try {
    if (r) storage?.setItem(RECORD_KEY, JSON.stringify(r));
    else storage?.removeItem(RECORD_KEY);
  } catch {
    // storage disabled: the id lives for this page only
  }
}

/**
 * Whether a subscription the browser holds already can be kept for this user: it was made
 * for them (the record says so; its endpoint may have changed since, when the worker
 * subscribed again after a pushsubscriptionchange) with the server's current key. Anyone
 * else's, or one nobody recorded, is dropped and a new one made.
 */
export function keepExisting(sub: SubscriptionLike, record: PushRecord | null, userId: string, key: Uint8Array): boolean {
  return record !== null && record.user_id === userId && sameKey(sub.options?.applicationServerKey, key);
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what} did not finish in ${Math.round(ms / 1000)} s`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

/**
 * One user's push subscription in this browser. The steps of every subscriber of the page
 * run one at a time (an enable, then a logout that came meanwhile, then the next user's
 * enable: the browser has one subscription for them all), each quiet on failure.
 */
export class PushSubscriber {
  private static queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly api: PushApi,
    private readonly env: PushEnv,
    private readonly userId: string,
  ) {}

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const run = PushSubscriber.queue.then(f, f);
    PushSubscriber.queue = run.catch(() => undefined);
    return run;
  }

  /** The record of this browser's subscription, if it is this user's. */
  record(): PushRecord | null {
    const r = loadRecord(this.env.storage);
    return r && r.user_id === this.userId ? r : null;
  }

  /** Registers the worker, subscribes with the server's key and hands the subscription to
   * the server (again on every call: the server answers the same id for an endpoint it
   * knows). */
  enable(): Promise<PushStatus> {
    return this.serial(async () => {
      if (!this.env.supported) return 'unsupported';
      const wait = this.env.waitMs ?? WAIT_MS;
      let step = 'registering the service worker';
      try {
        const reg = await within(this.env.register(), wait, step);
        step = 'asking for the push key';
        const keyText = await this.api.pushPublicKey();
        if (keyText === null) return 'unavailable';
        const key = vapidKeyBytes(keyText);
        if (!key) {
          this.env.warn('kchat: push notifications are off: the server\'s push key is not a P-256 public key');
          return 'failed';
        }
        const record = loadRecord(this.env.storage);
        step = 'subscribing to push';
        let sub = await within(reg.pushManager.getSubscription(), wait, step);
        if (sub && !keepExisting(sub, record, this.userId, key)) {
          await within(sub.unsubscribe(), wait, step).catch(() => false);
          sub = null;
        }
        sub ??= await within(reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }), wait, step);
        const body = subscriptionBody(sub.toJSON());
        if (!body) {
          this.env.warn('kchat: push notifications are off: the browser gave an incomplete subscription');
          return 'failed';
        }
        step = 'registering the subscription with the server';
        const id = await this.api.addPushSubscription(body);
        // the server's record of an endpoint this browser no longer has (replaced by a
        // pushsubscriptionchange) goes
        if (record && record.user_id === this.userId && record.id !== id) {
          await this.api.deletePushSubscription(record.id).catch(() => undefined);
        }
        saveRecord(this.env.storage, { user_id: this.userId, id, endpoint: body.endpoint });
        return 'subscribed';
      } catch (e) {
        this.env.warn(`kchat: push notifications are off (${step} failed): ${e instanceof Error ? e.message : String(e)}`);
        return 'failed';
      }
    });
  }

  /**
   * Turns push off for this user here: the server forgets the subscription (under `token`
   * when given: on logout the session is gone by the time this runs) and the browser drops
   * it. The worker stays: it still opens the notifications already shown.
   */
  disable(token?: string): Promise<void> {
    // the record goes at once, so an enable queued after this one starts afresh; one that an
    // enable still running writes is taken when this step's turn comes
    const early = this.takeRecord();
    return this.serial(async () => {
      const late = this.takeRecord();
      const ids = new Set([early, late].filter((r): r is PushRecord => r !== null && r.user_id === this.userId).map((r) => r.id));
      for (const id of ids) {
        await this.api.deletePushSubscription(id, token).catch((e: unknown) => {
          this.env.warn(`kchat: the server did not forget this browser's push subscription: ${e instanceof Error ? e.message : String(e)}`);
        });
      }
      await this.unsubscribe();
    });
  }

  /** The session ended without a logout here (another tab, a refused refresh): the browser
   * drops its subscription; the server forgets it when the push service says it is gone. */
  forget(): Promise<void> {
    this.takeRecord();
    return this.serial(async () => {
      this.takeRecord();
      await this.unsubscribe();
    });
  }

  private takeRecord(): PushRecord | null {
    const r = loadRecord(this.env.storage);
    if (r) saveRecord(this.env.storage, null);
    return r;
  }

  private async unsubscribe(): Promise<void> {
    if (!this.env.supported) return;
    const wait = this.env.waitMs ?? WAIT_MS;
    try {
      const reg = await within(this.env.existing(), wait, 'finding the service worker');
      const sub = reg ? await within(reg.pushManager.getSubscription(), wait, 'finding the subscription') : null;
      if (sub) await within(sub.unsubscribe(), wait, 'unsubscribing');
    } catch (e) {
      this.env.warn(`kchat: could not drop this browser's push subscription: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}

/** The browser's own PushEnv. */
export function browserPushEnv(): PushEnv {
  const sw = typeof navigator !== 'undefined' ? navigator.serviceWorker : undefined;
  const supported = sw !== undefined && typeof PushManager !== 'undefined' && typeof Notification !== 'undefined';
  let storage: StorageLike | null = null;
  try {
    storage = localStorage;
  } catch {
    storage = null;
  }
  return {
    supported,
    storage,
    async register() {
      if (!sw) throw new Error('no service workers');
      // updateViaCache 'none': the browser asks the server for /sw.js on every update check,
      // whatever HTTP caches say
      await sw.register(SW_URL, { scope: SW_SCOPE, updateViaCache: 'none' });
      return sw.ready;
    },
    async existing() {
      return sw ? ((await sw.getRegistration(SW_SCOPE)) ?? null) : null;
    },
    warn(message) {
      console.warn(message);
    },
  };
}
