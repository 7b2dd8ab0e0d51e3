// The WebSocket to a gateway: `/ws?access_token=…` on the page's own origin, reconnected
// with capped, jittered backoff, closed at once when the browser says it is offline and
// opened again when it is back. It knows nothing of chat state: the chat client reacts to
// `open` (resend, sync) and to frames.

import { MAX_FRAME_BYTES, parseServerFrame, type ClientFrame, type ServerFrame } from './protocol';

export type SocketState = 'connecting' | 'open' | 'offline' | 'closed';

export interface SocketEvents {
  state(s: SocketState, detail?: string): void;
  open(): void;
  frame(f: ServerFrame): void;
}

const BACKOFF_MIN_MS = 500;
// What this client sends, at most: below the gateway's per-socket rate (20 frames/s, bursts
// of 40), so a burst of sends, syncs and read markers is queued here rather than refused
// there.
const SEND_RATE_PER_S = 10;
const SEND_BURST = 20;
const MAX_QUEUED_FRAMES = 2000;
const BACKOFF_MAX_MS = 15000;
const CONNECT_TIMEOUT_MS = 10000;

export function wsUrl(token: string, loc: Location = window.location): string {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/ws?access_token=${encodeURIComponent(token)}`;
}

export class ChatSocket {
  private ws: WebSocket | null = null;
  private state: SocketState = 'closed';
  private attempt = 0;
  private failedOpens = 0;
  private queue: string[] = [];
  private tokens = SEND_BURST;
  private refilledAt = 0;
  private flushTimer: ReturnType<typeof setTimeout> | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private connectTimer: ReturnType<typeof setTimeout> | null = null;
  private running = false;
  private readonly onOnline = () => this.reconnectNow();
  private readonly onOffline = () => this.drop('offline');

  constructor(
    /** an access token; `fresh` after handshakes keep failing (a refused token) */
    private readonly token: (fresh: boolean) => Promise<string>,
    private readonly on: SocketEvents,
  ) {}

  get current(): SocketState {
    return this.state;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
    if (navigator.onLine === false) this.setState('offline');
    else void this.connect();
  }

  stop(): void {
    this.running = false;
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, 'bye');
    this.setState('closed');
  }

  /**
   * Queues a frame if the socket is open; false otherwise (the caller keeps it for later).
   * Frames leave at SEND_RATE_PER_S; those still queued when the socket closes are dropped,
   * and the chat client sends what matters again on the next open.
   */
  send(frame: ClientFrame): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || this.state !== 'open') return false;
    if (this.queue.length >= MAX_QUEUED_FRAMES) return false;
    this.queue.push(JSON.stringify(frame));
    this.flush();
    return true;
  }

  private flush(): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      this.queue = [];
      return;
    }
    const now = Date.now();
    this.tokens = Math.min(SEND_BURST, this.tokens + ((now - this.refilledAt) / 1000) * SEND_RATE_PER_S);
    this.refilledAt = now;
    while (this.queue.length > 0 && this.tokens >= 1) {
      ws.send(this.queue.shift() as string);
      this.tokens -= 1;
    }
    if (this.queue.length > 0 && !this.flushTimer) {
      const wait = Math.ceil(((1 - this.tokens) / SEND_RATE_PER_S) * 1000);
      this.flushTimer = setTimeout(() => {
        this.flushTimer = null;
        this.flush();
      }, wait);
    }
  }

  /** Closes the current socket as if the connection had dropped (the browser went offline). */
  private drop(why: 'offline' | 'error'): void {
    const ws = this.ws;
    this.ws = null;
    this.clearTimers();
    if (ws) ws.close(1000, why);
    if (why === 'offline') this.setState('offline');
    else this.scheduleRetry();
  }

  private reconnectNow(): void {
    if (!this.running) return;
    this.attempt = 0;
    if (this.ws) return;
    this.clearTimers();
    void this.connect();
  }

  private setState(s: SocketState, detail?: string): void {
    this.state = s;
    this.on.state(s, detail);
  }

  private clearTimers(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.connectTimer) clearTimeout(this.connectTimer);
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.retryTimer = null;
    this.connectTimer = null;
    this.flushTimer = null;
    this.queue = [];
  }

  private scheduleRetry(detail?: string): void {
    if (!this.running) return;
    if (navigator.onLine === false) {
      this.setState('offline');
      return;
    }
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = base / 2 + Math.random() * (base / 2);
    this.attempt = Math.min(this.attempt + 1, 10);
    this.setState('connecting', detail);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, delay);
  }

  private async connect(): Promise<void> {
    if (!this.running || this.ws) return;
    this.setState('connecting');
    let token: string;
    try {
      token = await this.token(this.failedOpens >= 2);
      if (this.failedOpens >= 2) this.failedOpens = 0;
    } catch (e) {
      // logged out (401): the app goes back to the login screen; anything else: try again later
      if (typeof e === 'object' && e !== null && 'status' in e && e.status === 401) {
        this.stop();
        return;
      }
      this.scheduleRetry('Cannot reach the server.');
      return;
    }
    if (!this.running || this.ws) return;
    const ws = new WebSocket(wsUrl(token));
    this.ws = ws;
    this.connectTimer = setTimeout(() => {
      if (this.ws === ws && ws.readyState !== WebSocket.OPEN) this.drop('error');
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      if (this.ws !== ws) return;
      if (this.connectTimer) clearTimeout(this.connectTimer);
      this.connectTimer = null;
      this.attempt = 0;
      this.failedOpens = 0;
      this.queue = [];
      this.tokens = SEND_BURST;
      this.refilledAt = Date.now();
      this.setState('open');
      this.on.open();
    };
    ws.onmessage = (ev: MessageEvent<unknown>) => {
      if (this.ws !== ws || typeof ev.data !== 'string' || ev.data.length > MAX_FRAME_BYTES) return;
      const f = parseServerFrame(ev.data);
      if (f) this.on.frame(f);
    };
    let opened = false;
    ws.addEventListener('open', () => {
      opened = true;
    });
    ws.onclose = (ev: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (!opened) this.failedOpens++;
      this.clearTimers();
      // 1008 (policy) at the handshake usually means an expired or refused token: the next
      // attempt fetches a fresh one through Api.accessToken().
      this.scheduleRetry(ev.reason || undefined);
    };
    ws.onerror = () => {
      // onclose follows and schedules the retry
    };
  }
}
