import { describe, expect, it } from 'vitest';
import { ApiError, type AttachmentLinks } from './api';
import {
  LinkCache,
  admitFiles,
  canSend,
  contentTypeOf,
  kindOf,
  maxBytesFrom,
  previewOf,
  progressOf,
  readyAttachments,
  safeFileName,
  thumbSize,
  uploadErrorText,
  type Upload,
} from './attachments';
import { parseAttachment, parseMessage, type Attachment } from './protocol';
import { storeMessage } from './upload';

const att = (id: string, extra: Partial<Attachment> = {}): Attachment => ({
  id,
  key: `attachments/c1/${id}/f/x`,
  name: `${id}.png`,
  size: 10,
  content_type: 'image/png',
  width: 640,
  height: 480,
  thumb_key: `attachments/c1/${id}/t.webp`,
  ...extra,
});

const up = (key: string, phase: Upload['phase'], extra: Partial<Upload> = {}): Upload => ({
  key,
  name: `${key}.bin`,
  size: 100,
  content_type: 'application/octet-stream',
  phase,
  loaded: 0,
  ...extra,
});

describe('the files the composer takes', () => {
  const file = (name: string, size: number, type = '') => ({ name, size, type });

  it('takes up to ten in all, and says why it left the others out', () => {
    const current = [up('a', 'done'), up('b', 'uploading')];
    const files = Array.from({ length: 10 }, (_, i) => file(`f${i}.txt`, 5, 'text/plain'));
    const { admitted, refused } = admitFiles(current, files, null);
    expect(admitted.map((f) => f.name)).toEqual(['f0.txt', 'f1.txt', 'f2.txt', 'f3.txt', 'f4.txt', 'f5.txt', 'f6.txt', 'f7.txt']);
    expect(refused).toEqual([
      '“f8.txt” was not added: a message carries at most 10 files.',
      '“f9.txt” was not added: a message carries at most 10 files.',
    ]);
  });

  it('refuses an empty file, and one over the server\'s limit once it is known', () => {
    const files = [file('empty.txt', 0), file('big.zip', 2 * 1024 * 1024), file('ok.zip', 1024)];
    expect(admitFiles([], files, null).admitted.map((f) => f.name)).toEqual(['big.zip', 'ok.zip']);
    const { admitted, refused } = admitFiles([], files, 1024 * 1024);
    expect(admitted.map((f) => f.name)).toEqual(['ok.zip']);
    expect(refused).toEqual(['“empty.txt” is empty.', '“big.zip” is too large: files are at most 1 MB.']);
  });

  it('learns the limit from a 413', () => {
    expect(maxBytesFrom('attachments are at most 104857600 bytes')).toBe(104857600);
    expect(maxBytesFrom('something else')).toBeNull();
  });

  it('presigns with the browser\'s media type, or one from the extension', () => {
    expect(contentTypeOf(file('a.png', 1, 'image/png'))).toBe('image/png');
    expect(contentTypeOf(file('a.txt', 1, 'text/plain;charset=utf-8'))).toBe('text/plain');
    expect(contentTypeOf(file('Report.PDF', 1))).toBe('application/pdf');
    expect(contentTypeOf(file('noext', 1))).toBe('application/octet-stream');
  });

  it('sends a file name the server takes', () => {
    expect(safeFileName('a/b\\c\u0001.txt')).toBe('a_b_c_.txt');
    expect(safeFileName('  ')).toBe('file');
    const long = safeFileName('é'.repeat(300) + '.jpeg');
    expect(new TextEncoder().encode(long).length).toBeLessThanOrEqual(255);
    expect(long.endsWith('é.jpeg')).toBe(true);
  });
});

describe('the composer\'s uploads', () => {
  it('can send text alone, finished files alone, or both; never while a file uploads', () => {
    expect(canSend('', [])).toBe(false);
    expect(canSend('  ', [])).toBe(false);
    expect(canSend('hi', [])).toBe(true);
    expect(canSend('', [up('a', 'done')])).toBe(true);
    expect(canSend('hi', [up('a', 'done'), up('b', 'completing')])).toBe(false);
    expect(canSend('', [up('a', 'presigning')])).toBe(false);
  });

  it('shows progress from the bytes sent', () => {
    expect(progressOf(up('a', 'presigning'))).toBe(0);
    expect(progressOf(up('a', 'uploading', { loaded: 25 }))).toBe(0.25);
    expect(progressOf(up('a', 'uploading', { loaded: 500 }))).toBe(1);
    expect(progressOf(up('a', 'completing'))).toBe(1);
    expect(progressOf(up('a', 'done'))).toBe(1);
  });

  it('sends the finished files in the order they were added', () => {
    const a1 = att('a_1');
    const a2 = att('a_2');
    expect(readyAttachments([up('x', 'done', { attachment: a2 }), up('y', 'uploading'), up('z', 'done', { attachment: a1 })]).map((a) => a.id)).toEqual(['a_2', 'a_1']);
  });

  it('says why an upload failed in the server\'s words', () => {
    expect(uploadErrorText('page.html', 'attachment_type_refused', 'this media type is not accepted for attachments')).toBe(
      '“page.html” was not attached: this media type is not accepted for attachments.',
    );
    expect(uploadErrorText('x.png', 'invalid_image', 'the image cannot be decoded.')).toBe('“x.png” was not attached: the image cannot be decoded.');
    expect(uploadErrorText('x', 'attachments_unavailable', 'no store')).toBe('“x” was not attached: this server takes no attachments.');
    expect(uploadErrorText('x', 'store', 'Access Denied.')).toBe('“x” could not be uploaded: Access Denied.');
    expect(storeMessage('<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>Access Denied.</Message></Error>')).toBe('Access Denied.');
  });
});

describe('showing attachments', () => {
  it('keeps an image\'s aspect within its box, and a box for one without a size', () => {
    expect(thumbSize({ width: 1000, height: 500 })).toEqual({ width: 240, height: 120 });
    expect(thumbSize({ width: 300, height: 900 })).toEqual({ width: 80, height: 240 });
    expect(thumbSize({ width: 100, height: 50 })).toEqual({ width: 100, height: 50 });
    expect(thumbSize({ width: null, height: null })).toEqual({ width: 240, height: 240 });
  });

  it('tells the kind of a file', () => {
    expect(kindOf(att('a'))).toBe('image');
    expect(kindOf({ content_type: 'application/pdf', thumb_key: null })).toBe('pdf');
    expect(kindOf({ content_type: 'audio/ogg', thumb_key: null })).toBe('audio');
    expect(kindOf({ content_type: 'application/zip', thumb_key: null })).toBe('archive');
    expect(kindOf({ content_type: 'text/csv', thumb_key: null })).toBe('text');
    expect(kindOf({ content_type: 'application/octet-stream', thumb_key: null })).toBe('file');
  });

  it('previews a message of files only by its files', () => {
    expect(previewOf({ content: 'hello', attachments: [att('a')] })).toBe('hello');
    expect(previewOf({ content: '', attachments: [att('a')] })).toBe('File: a.png');
    expect(previewOf({ content: '', attachments: [att('a'), att('b'), att('c')] })).toBe('Files: a.png and 2 more');
    expect(previewOf({ content: '' })).toBe('');
  });
});

describe('attachments from the server', () => {
  it('reads an attachment, refusing one with a field of the wrong type', () => {
    const a = att('a_1');
    expect(parseAttachment(a)).toEqual(a);
    expect(parseAttachment({ ...a, width: null, height: null, thumb_key: null })).toEqual({ ...a, width: null, height: null, thumb_key: null });
    expect(parseAttachment({ ...a, size: 0 })).toBeNull();
    expect(parseAttachment({ ...a, width: '640' })).toBeNull();
    expect(parseAttachment({ ...a, thumb_key: 3 })).toBeNull();
  });

  it('gives a message its files, none once deleted, and leaves out malformed ones', () => {
    const base = { convo_id: 'c1', seq_no: 3, sender_id: 'u1', content: '', created_at: 1 };
    expect(parseMessage({ ...base, attachments: [att('a_1'), { id: 'bad' }] })?.attachments).toEqual([att('a_1')]);
    expect(parseMessage({ ...base, attachments: [att('a_1')], deleted_at: '2026-01-01T00:00:00Z' })?.attachments).toEqual([]);
    expect(parseMessage(base)?.attachments).toBeUndefined();
  });
});

describe('the cache of download URLs', () => {
  const links = (n: number, expires_at: number): AttachmentLinks => ({ url: `https://s3/${n}`, thumb_url: null, expires_at, attachment: null });

  it('asks once for many callers, and keeps the answer until shortly before it expires', async () => {
    let now = 1_000_000;
    let calls = 0;
    const cache = new LinkCache(
      async () => {
        calls++;
        return links(calls, now + 300_000);
      },
      { now: () => now, marginMs: 20_000 },
    );
    const [x, y] = await Promise.all([cache.get('c1', 'a_1'), cache.get('c1', 'a_1')]);
    expect(calls).toBe(1);
    expect(x).toBe(y);
    expect(cache.peek('c1', 'a_1')?.url).toBe('https://s3/1');
    expect(cache.staleAt('c1', 'a_1')).toBe(1_000_000 + 280_000);
    now += 279_000;
    expect((await cache.get('c1', 'a_1')).url).toBe('https://s3/1');
    now += 1_000;
    expect(cache.peek('c1', 'a_1')).toBeNull();
    expect((await cache.get('c1', 'a_1')).url).toBe('https://s3/2');
    expect(calls).toBe(2);
    // another attachment is another entry
    expect((await cache.get('c1', 'a_2')).url).toBe('https://s3/3');
  });

  it('asks again after a 404 (the message may not be in the read model yet), then gives up', async () => {
    const waits: number[] = [];
    let calls = 0;
    const cache = new LinkCache(
      async () => {
        calls++;
        if (calls < 3) throw new ApiError(404, 'not_found', 'no such attachment');
        return links(calls, Date.now() + 300_000);
      },
      { retryDelaysMs: [10, 20, 30], sleep: async (ms) => void waits.push(ms) },
    );
    expect((await cache.get('c1', 'a_1')).url).toBe('https://s3/3');
    expect(waits).toEqual([10, 20]);
    const never = new LinkCache(
      async () => {
        throw new ApiError(404, 'not_found', 'no such attachment');
      },
      { retryDelaysMs: [1, 1], sleep: async () => undefined },
    );
    await expect(never.get('c1', 'a_1')).rejects.toMatchObject({ status: 404 });
  });

  it('does not retry other failures, and asks again on the next get', async () => {
    let calls = 0;
    const cache = new LinkCache(
      async () => {
        calls++;
        if (calls === 1) throw new ApiError(503, 'unavailable', 'down');
        return links(calls, Date.now() + 300_000);
      },
      { sleep: async () => undefined },
    );
    await expect(cache.get('c1', 'a_1')).rejects.toMatchObject({ status: 503 });
    expect(calls).toBe(1);
    expect((await cache.get('c1', 'a_1')).url).toBe('https://s3/2');
  });

  it('keeps at most maxEntries, the oldest going first', async () => {
    let n = 0;
    const cache = new LinkCache(async () => links(++n, Date.now() + 300_000), { maxEntries: 2 });
    await cache.get('c', 'a');
    await cache.get('c', 'b');
    await cache.get('c', 'c');
    expect(cache.peek('c', 'a')).toBeNull();
    expect(cache.peek('c', 'b')).not.toBeNull();
    expect(cache.peek('c', 'c')).not.toBeNull();
  });
});
