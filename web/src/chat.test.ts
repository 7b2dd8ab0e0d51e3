import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError, type Api, type Session } from './api';
import { ChatClient, manageErrorText } from './chat';
import type { ClientFrame, ServerFrame } from './protocol';
import { ChatSocket } from './socket';

describe('refusals of a change to a conversation, in words', () => {
  it('names what the role, the last owner or a direct conversation stopped', () => {
    expect(manageErrorText(new ApiError(403, 'not_allowed', 'only owners and admins remove members'))).toBe(
      'Your role in this conversation does not allow that.',
    );
    expect(manageErrorText(new ApiError(409, 'last_owner', 'x'))).toMatch(/only owner/);
    expect(manageErrorText(new ApiError(409, 'direct_conversation', 'x'))).toMatch(/direct conversation/);
    expect(manageErrorText(new ApiError(404, 'no_such_member', 'x'))).toMatch(/not a member/);
    expect(manageErrorText(new ApiError(404, 'not_found', 'x'))).toMatch(/gone/);
  });

  it('passes the server\'s reason on for invalid input and anything else', () => {
    expect(manageErrorText(new ApiError(400, 'invalid_request', 'title must be a string of 1 to 256 bytes of UTF-8'))).toBe(
      'Refused: title must be a string of 1 to 256 bytes of UTF-8.',
    );
    expect(manageErrorText(new ApiError(0, 'network', 'Cannot reach the server.'))).toBe('Cannot reach the server.');
    expect(manageErrorText(new Error('boom'))).toBe('boom');
  });
});

describe('a reply is sent, retried and kept in the outbox with its reply_to', () => {
  const session: Session = { user_id: 'u_me', username: 'me', access_token: 't', refresh_token: 'r', access_expires_at: 0 };
  const api = {
    conversations: async () => [],
    userName: async () => null,
    messages: async () => ({ messages: [], next_cursor: null }),
  } as unknown as Api;
  let stored: Map<string, string>;
  let sent: ClientFrame[];
  let connected: boolean;

  beforeEach(() => {
    stored = new Map();
    sent = [];
    connected = true;
    vi.stubGlobal('localStorage', {
      getItem: (k: string) => stored.get(k) ?? null,
      setItem: (k: string, v: string) => void stored.set(k, v),
      removeItem: (k: string) => void stored.delete(k),
    });
    vi.spyOn(ChatSocket.prototype, 'send').mockImplementation((f: ClientFrame) => {
      if (connected) sent.push(f);
      return connected;
    });
  });

  afterEach(() => {
    vi.restoreAllMocks();
    vi.unstubAllGlobals();
  });

  const frame = (c: ChatClient, f: ServerFrame) => (c as unknown as { onFrame(f: ServerFrame): void }).onFrame(f);
  const reopen = (c: ChatClient) => (c as unknown as { onOpen(): void }).onOpen();
  const sends = () => sent.filter((f) => f.type === 'message.send');

  it('sends reply_to, and the same frame again on a retry and after a reconnect', () => {
    const c = new ChatClient(api, session);
    expect(c.sendMessage('c1', '  answer ', 4)).toBeNull();
    expect(sends()).toEqual([{ type: 'message.send', convo_id: 'c1', client_msg_id: expect.any(String), content: 'answer', reply_to: 4 }]);
    const first = sends()[0];
    expect(c.getState().logs['c1']?.pending[0]?.reply_to).toBe(4);
    // refused (not an earlier message): the bubble fails, with words; Retry sends it again as it was
    frame(c, { type: 'ack', ack: { client_msg_id: (first as { client_msg_id: string }).client_msg_id, status: 'error', error: { code: 'no_such_message', message: 'x' } } });
    expect(c.getState().logs['c1']?.pending[0]).toMatchObject({ state: 'failed', error: 'The message it replies to is not in this conversation.' });
    c.retry('c1', (first as { client_msg_id: string }).client_msg_id);
    expect(sends()[1]).toEqual(first);
    // a reconnect resends what waits for an ack: the same frame again
    reopen(c);
    expect(sends()[2]).toEqual(first);
    // a message without a reply has no reply_to at all
    c.sendMessage('c1', 'plain');
    expect('reply_to' in (sends()[3] as object)).toBe(false);
  });

  it('an unsent reply survives a reload with its reply_to', () => {
    connected = false;
    const c = new ChatClient(api, session);
    c.sendMessage('c1', 'later', 2);
    const saved = JSON.parse(stored.get('kchat.outbox.u_me') ?? '[]') as unknown[];
    expect(saved).toEqual([expect.objectContaining({ content: 'later', reply_to: 2 })]);
    connected = true;
    const again = new ChatClient(api, session);
    expect(again.getState().logs['c1']?.pending[0]).toMatchObject({ content: 'later', reply_to: 2 });
    reopen(again);
    expect(sends()).toEqual([expect.objectContaining({ content: 'later', reply_to: 2 })]);
  });
});
