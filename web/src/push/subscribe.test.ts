import { describe, expect, it } from 'vitest';
import {
  PushSubscriber,
  RECORD_KEY,
  base64UrlBytes,
  keepExisting,
  loadRecord,
  sameKey,
  subscriptionBody,
  vapidKeyBytes,
  type PushApi,
  type PushEnv,
  type RegistrationLike,
  type StorageLike,
  type SubscriptionBody,
  type SubscriptionLike,
} from './subscribe';

function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64url');
}

/** A P-256 public key as the server sends it: 0x04, X, Y. */
function keyBytes(fill: number): Uint8Array<ArrayBuffer> {
  const k = new Uint8Array(65).fill(fill);
  k[0] = 4;
  return k;
}
const KEY = b64url(keyBytes(7));
const OTHER_KEY = b64url(keyBytes(9));
const ME = 'u_aaaaaaaaaaaaaaaaaaaaaaaaaa';
const SOMEONE = 'u_bbbbbbbbbbbbbbbbbbbbbbbbbb';

describe('push keys and subscriptions', () => {
  it('decodes base64url, padded or not', () => {
    expect(Array.from(base64UrlBytes('AQID')!)).toEqual([1, 2, 3]);
    expect(Array.from(base64UrlBytes('_-8')!)).toEqual([0xff, 0xef]);
    expect(Array.from(base64UrlBytes('_-8=')!)).toEqual([0xff, 0xef]);
    expect(base64UrlBytes('a')).toBeNull();
    expect(base64UrlBytes('not base64!')).toBeNull();
  });

  it('takes the 65-byte uncompressed P-256 point only', () => {
    expect(vapidKeyBytes(KEY)).toEqual(keyBytes(7));
    expect(vapidKeyBytes(b64url(new Uint8Array(65)))).toBeNull(); // not 0x04
    expect(vapidKeyBytes(b64url(keyBytes(7).slice(0, 33)))).toBeNull();
    expect(vapidKeyBytes('')).toBeNull();
  });

  it('compares a subscription\'s key with the server\'s', () => {
    expect(sameKey(keyBytes(7).buffer, keyBytes(7))).toBe(true);
    expect(sameKey(keyBytes(9).buffer, keyBytes(7))).toBe(false);
    expect(sameKey(null, keyBytes(7))).toBe(true); // the browser does not say
  });

  it('posts the endpoint and both keys, nothing else', () => {
    const json = { endpoint: 'https://push.example/send/abc', expirationTime: null, keys: { p256dh: 'BAAA', auth: 'q83v' } };
    expect(subscriptionBody(json)).toEqual({ endpoint: 'https://push.example/send/abc', keys: { p256dh: 'BAAA', auth: 'q83v' } });
    expect(subscriptionBody({ ...json, endpoint: 'ftp://x' })).toBeNull();
    expect(subscriptionBody({ ...json, keys: { p256dh: 'BAAA' } })).toBeNull();
    expect(subscriptionBody({ ...json, keys: { p256dh: 'BA A', auth: 'q83v' } })).toBeNull();
    expect(subscriptionBody(null)).toBeNull();
  });

  it('keeps a subscription made for this user with this key, drops anyone else\'s', () => {
    const sub = fakeSub('https://push.example/1', keyBytes(7));
    const rec = { user_id: ME, id: 's1', endpoint: 'https://push.example/1' };
    expect(keepExisting(sub, rec, ME, keyBytes(7))).toBe(true);
    expect(keepExisting(sub, { ...rec, endpoint: 'https://push.example/old' }, ME, keyBytes(7))).toBe(true);
    expect(keepExisting(sub, rec, SOMEONE, keyBytes(7))).toBe(false);
    expect(keepExisting(sub, null, ME, keyBytes(7))).toBe(false);
    expect(keepExisting(sub, rec, ME, keyBytes(9))).toBe(false);
  });
});

function fakeSub(endpoint: string, key: Uint8Array | null, onUnsubscribe?: () => void): SubscriptionLike & { gone: boolean } {
  const s = {
    endpoint,
    gone: false,
    options: { applicationServerKey: key ? (key.slice().buffer as ArrayBuffer) : null },
    toJSON: () => ({ endpoint, expirationTime: null, keys: { p256dh: 'BPp0', auth: 'YXV0aA' } }),
    unsubscribe: async () => {
      s.gone = true;
      onUnsubscribe?.();
      return true;
    },
  };
  return s;
}

class MemoryStorage implements StorageLike {
  readonly m = new Map<string, string>();
  getItem(k: string) {
    return this.m.get(k) ?? null;
  }
  setItem(k: string, v: string) {
    this.m.set(k, v);
  }
  removeItem(k: string) {
    this.m.delete(k);
  }
}

/** A browser (one registration, one push service) and a server, both fakes, and what was
 * asked of them. */
function world(o: { key?: string | null; keyError?: Error; subscribeError?: Error; supported?: boolean; existing?: SubscriptionLike } = {}) {
  const calls: string[] = [];
  const posted: SubscriptionBody[] = [];
  const deleted: { id: string; token: string | undefined }[] = [];
  const warnings: string[] = [];
  let current: (SubscriptionLike & { gone?: boolean }) | null = o.existing ?? null;
  let n = 0;
  const reg: RegistrationLike = {
    pushManager: {
      getSubscription: async () => (current && !(current as { gone?: boolean }).gone ? current : null),
      subscribe: async ({ applicationServerKey }) => {
        calls.push('subscribe');
        if (o.subscribeError) throw o.subscribeError;
        current = fakeSub(`https://push.example/${++n}`, applicationServerKey);
        return current;
      },
    },
  };
  const storage = new MemoryStorage();
  const env: PushEnv = {
    supported: o.supported ?? true,
    storage,
    register: async () => {
      calls.push('register');
      return reg;
    },
    existing: async () => reg,
    warn: (m) => warnings.push(m),
    waitMs: 1000,
  };
  const ids = new Map<string, string>();
  const api: PushApi = {
    pushPublicKey: async () => {
      calls.push('key');
      if (o.keyError) throw o.keyError;
      return o.key === undefined ? KEY : o.key;
    },
    addPushSubscription: async (body) => {
      posted.push(body);
      if (!ids.has(body.endpoint)) ids.set(body.endpoint, `s${ids.size + 1}`);
      return ids.get(body.endpoint)!;
    },
    deletePushSubscription: async (id, token) => {
      deleted.push({ id, token });
    },
  };
  return { api, env, storage, calls, posted, deleted, warnings, current: () => current };
}

describe('the subscribe flow', () => {
  it('registers the worker, subscribes with the server\'s key, posts it and keeps its id', async () => {
    const w = world();
    const push = new PushSubscriber(w.api, w.env, ME);
    expect(await push.enable()).toBe('subscribed');
    expect(w.calls).toEqual(['register', 'key', 'subscribe']);
    expect(w.posted).toEqual([{ endpoint: 'https://push.example/1', keys: { p256dh: 'BPp0', auth: 'YXV0aA' } }]);
    expect(loadRecord(w.storage)).toEqual({ user_id: ME, id: 's1', endpoint: 'https://push.example/1' });
    expect(w.warnings).toEqual([]);
    // again (the next page load): the same subscription, posted again, the same id
    expect(await push.enable()).toBe('subscribed');
    expect(w.calls.filter((c) => c === 'subscribe')).toHaveLength(1);
    expect(w.posted).toHaveLength(2);
    expect(w.deleted).toEqual([]);
  });

  it('stops quietly when the server has no push (503, 404)', async () => {
    const w = world({ key: null });
    expect(await new PushSubscriber(w.api, w.env, ME).enable()).toBe('unavailable');
    expect(w.calls).toEqual(['register', 'key']);
    expect(w.posted).toEqual([]);
    expect(w.warnings).toEqual([]);
  });

  it('does nothing in a browser without Push', async () => {
    const w = world({ supported: false });
    const push = new PushSubscriber(w.api, w.env, ME);
    expect(await push.enable()).toBe('unsupported');
    await push.disable('t');
    expect(w.calls).toEqual([]);
    expect(w.warnings).toEqual([]);
  });

  it('warns once, and throws nothing, when the push service refuses', async () => {
    const w = world({ subscribeError: new DOMException('Registration failed - permission denied', 'AbortError') });
    expect(await new PushSubscriber(w.api, w.env, ME).enable()).toBe('failed');
    expect(w.posted).toEqual([]);
    expect(w.warnings).toHaveLength(1);
    expect(w.warnings[0]).toMatch(/subscribing to push failed.*permission denied/);
    expect(loadRecord(w.storage)).toBeNull();
  });

  it('warns on a key that is not a P-256 point, or a server that fails', async () => {
    const bad = world({ key: 'AQID' });
    expect(await new PushSubscriber(bad.api, bad.env, ME).enable()).toBe('failed');
    expect(bad.calls).not.toContain('subscribe');
    expect(bad.warnings[0]).toMatch(/not a P-256 public key/);
    const down = world({ keyError: new Error('Cannot reach the server.') });
    expect(await new PushSubscriber(down.api, down.env, ME).enable()).toBe('failed');
    expect(down.warnings[0]).toMatch(/asking for the push key failed/);
  });

  it('gives up on a browser call that never answers', async () => {
    const w = world();
    w.env.register = () => new Promise<RegistrationLike>(() => undefined);
    w.env.waitMs = 20;
    expect(await new PushSubscriber(w.api, w.env, ME).enable()).toBe('failed');
    expect(w.warnings[0]).toMatch(/registering the service worker failed/);
  });

  it('drops a subscription that someone else (or nobody) recorded, or made with another key', async () => {
    const theirs = fakeSub('https://push.example/theirs', keyBytes(7));
    const w = world({ existing: theirs });
    w.storage.setItem(RECORD_KEY, JSON.stringify({ user_id: SOMEONE, id: 'old', endpoint: theirs.endpoint }));
    expect(await new PushSubscriber(w.api, w.env, ME).enable()).toBe('subscribed');
    expect(theirs.gone).toBe(true);
    expect(w.posted.map((p) => p.endpoint)).toEqual(['https://push.example/1']);
    expect(w.deleted).toEqual([]); // not ours to delete

    const stale = fakeSub('https://push.example/stale', keyBytes(9));
    const k = world({ existing: stale, key: KEY });
    k.storage.setItem(RECORD_KEY, JSON.stringify({ user_id: ME, id: 's9', endpoint: stale.endpoint }));
    expect(OTHER_KEY).not.toBe(KEY);
    expect(await new PushSubscriber(k.api, k.env, ME).enable()).toBe('subscribed');
    expect(stale.gone).toBe(true);
    expect(k.calls).toContain('subscribe');
    // the server's record of the old endpoint goes too
    expect(k.deleted).toEqual([{ id: 's9', token: undefined }]);
  });

  it('posts the subscription the worker made after a pushsubscriptionchange and drops the old id', async () => {
    const renewed = fakeSub('https://push.example/renewed', keyBytes(7));
    const w = world({ existing: renewed });
    w.storage.setItem(RECORD_KEY, JSON.stringify({ user_id: ME, id: 'before', endpoint: 'https://push.example/before' }));
    expect(await new PushSubscriber(w.api, w.env, ME).enable()).toBe('subscribed');
    expect(w.calls).not.toContain('subscribe');
    expect(w.posted.map((p) => p.endpoint)).toEqual(['https://push.example/renewed']);
    expect(w.deleted).toEqual([{ id: 'before', token: undefined }]);
    expect(loadRecord(w.storage)?.endpoint).toBe('https://push.example/renewed');
  });

  it('on logout, deletes it on the server under the token it was given, and unsubscribes', async () => {
    const w = world();
    const push = new PushSubscriber(w.api, w.env, ME);
    await push.enable();
    const sub = w.current() as { gone: boolean };
    // the session goes at once; the request already has its token
    await push.disable('the-token');
    expect(w.deleted).toEqual([{ id: 's1', token: 'the-token' }]);
    expect(sub.gone).toBe(true);
    expect(loadRecord(w.storage)).toBeNull();
  });

  it('a logout while enable runs waits for it and deletes what it made', async () => {
    const w = world();
    const push = new PushSubscriber(w.api, w.env, ME);
    const enabling = push.enable();
    const out = push.disable('tok');
    expect(await enabling).toBe('subscribed');
    await out;
    expect(w.deleted).toEqual([{ id: 's1', token: 'tok' }]);
    expect((w.current() as { gone: boolean }).gone).toBe(true);
    expect(loadRecord(w.storage)).toBeNull();
  });

  it('the next user\'s enable waits for the last one\'s logout, so it keeps its own subscription', async () => {
    const w = world();
    const mine = new PushSubscriber(w.api, w.env, ME);
    await mine.enable();
    const out = mine.disable('my-token');
    const theirs = new PushSubscriber(w.api, w.env, SOMEONE);
    const next = theirs.enable();
    await out;
    expect(await next).toBe('subscribed');
    expect(w.deleted).toEqual([{ id: 's1', token: 'my-token' }]);
    expect(w.current()?.endpoint).toBe('https://push.example/2');
    expect((w.current() as { gone: boolean }).gone).toBe(false);
    expect(loadRecord(w.storage)).toEqual({ user_id: SOMEONE, id: 's2', endpoint: 'https://push.example/2' });
  });

  it('a session that ended elsewhere unsubscribes without asking the server', async () => {
    const w = world();
    const push = new PushSubscriber(w.api, w.env, ME);
    await push.enable();
    await push.forget();
    expect(w.deleted).toEqual([]);
    expect((w.current() as { gone: boolean }).gone).toBe(true);
    expect(loadRecord(w.storage)).toBeNull();
  });

  it('a failed delete warns and still unsubscribes', async () => {
    const w = world();
    const push = new PushSubscriber(w.api, w.env, ME);
    await push.enable();
    w.api.deletePushSubscription = async () => {
      throw new Error('Cannot reach the server.');
    };
    await push.disable();
    expect(w.warnings).toEqual(['kchat: the server did not forget this browser\'s push subscription: Cannot reach the server.']);
    expect((w.current() as { gone: boolean }).gone).toBe(true);
  });
});
