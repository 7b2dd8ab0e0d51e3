import { describe, expect, it } from 'vitest';
import { GROUP_GAP_MS, dayLabelOf, dayNumberOf, layoutOf, sizeOf, snippetOf } from './format';

describe('the snippet of a quoted message', () => {
  it('folds whitespace and keeps a short text whole', () => {
    expect(snippetOf('  hello\n\n  there\tyou ')).toBe('hello there you');
  });

  it('cuts a long one at 100 characters, whole code points, with an ellipsis', () => {
    const long = 'x'.repeat(99) + '😀' + 'y'.repeat(50);
    const s = snippetOf(long);
    expect(Array.from(s)).toHaveLength(101);
    expect(s.endsWith('😀…')).toBe(true);
    expect(snippetOf('a'.repeat(100))).toBe('a'.repeat(100));
  });
});

describe('days', () => {
  const at = (iso: string) => Date.parse(iso);

  it('counts calendar days in the given time zone', () => {
    // 23:30 in UTC is still 10 March in New York and already 11 March in Tokyo
    const t = at('2024-03-10T23:30:00Z');
    expect(dayNumberOf(t, 'UTC')).toBe(dayNumberOf(at('2024-03-10T00:00:00Z'), 'UTC'));
    expect(dayNumberOf(t, 'America/New_York')).toBe(dayNumberOf(at('2024-03-10T12:00:00Z'), 'UTC'));
    expect(dayNumberOf(t, 'Asia/Tokyo')).toBe(dayNumberOf(at('2024-03-11T12:00:00Z'), 'UTC'));
    // across a change to summer time the days are still one apart
    expect(dayNumberOf(at('2024-03-11T12:00:00Z'), 'America/New_York') - dayNumberOf(at('2024-03-10T06:00:00Z'), 'America/New_York')).toBe(1);
  });

  it('labels today, yesterday and other days in the locale', () => {
    const now = at('2024-03-11T10:00:00Z');
    const o = { locale: 'en-US', timeZone: 'UTC' };
    expect(dayLabelOf(at('2024-03-11T00:00:01Z'), now, o)).toBe('Today');
    expect(dayLabelOf(at('2024-03-10T23:59:59Z'), now, o)).toBe('Yesterday');
    expect(dayLabelOf(at('2024-03-09T12:00:00Z'), now, o)).toBe('Saturday, March 9');
    expect(dayLabelOf(at('2023-12-31T12:00:00Z'), now, o)).toBe('Sunday, December 31, 2023');
    expect(dayLabelOf(at('2024-03-09T12:00:00Z'), now, { locale: 'de-DE', timeZone: 'UTC' })).toBe('Samstag, 9. März');
    // the viewer's zone decides what is yesterday: 01:00 in Tokyo on the 11th is the 10th in UTC
    expect(dayLabelOf(at('2024-03-10T16:00:00Z'), now, { locale: 'en-US', timeZone: 'Asia/Tokyo' })).toBe('Today');
    expect(dayLabelOf(at('2024-03-10T16:00:00Z'), now, o)).toBe('Yesterday');
  });

  it('uses the viewer\'s zone by default, as Date does', () => {
    const now = Date.now();
    expect(dayLabelOf(now, now)).toBe('Today');
    expect(dayLabelOf(now - 86_400_000 - 3_600_000 * 2, now)).toMatch(/^(Yesterday|[A-Z])/);
    const d = new Date(2024, 2, 10, 23, 59);
    expect(dayNumberOf(d.getTime()) + 1).toBe(dayNumberOf(new Date(2024, 2, 11, 0, 1).getTime()));
  });
});

describe('groups and date separators', () => {
  const at = (iso: string) => Date.parse(iso);
  const o = { locale: 'en-US', timeZone: 'UTC' };
  const now = at('2024-03-11T18:00:00Z');
  const msg = (sender_id: string, iso: string, seq = 0) => ({ sender_id, created_at: at(iso), seq });

  it('shows a sender once for their consecutive messages within a few minutes', () => {
    const l = layoutOf(
      [
        msg('ann', '2024-03-11T10:00:00Z'),
        msg('ann', '2024-03-11T10:01:00Z'),
        msg('ann', '2024-03-11T10:05:30Z'),
        msg('bob', '2024-03-11T10:06:00Z'),
        msg('ann', '2024-03-11T10:07:00Z'),
        msg('ann', '2024-03-11T10:20:00Z'), // more than GROUP_GAP_MS later
      ],
      now,
      o,
    );
    expect(l.map((x) => x.continues)).toEqual([false, true, true, false, false, false]);
    expect(l.map((x) => x.day)).toEqual(['Today', null, null, null, null, null]);
    expect(GROUP_GAP_MS).toBe(300_000);
  });

  it('puts a separator between days, and a new day starts a new group', () => {
    const l = layoutOf(
      [
        msg('ann', '2024-03-09T23:58:00Z'),
        msg('ann', '2024-03-10T00:01:00Z'),
        msg('ann', '2024-03-10T00:02:00Z'),
        msg('bob', '2024-03-11T09:00:00Z'),
      ],
      now,
      o,
    );
    expect(l).toEqual([
      { day: 'Saturday, March 9', continues: false },
      { day: 'Yesterday', continues: false },
      { day: null, continues: true },
      { day: 'Today', continues: false },
    ]);
    // in Tokyo the first two are of the same day (10 March) and one group
    const tokyo = layoutOf([msg('ann', '2024-03-09T23:58:00Z'), msg('ann', '2024-03-10T00:01:00Z')], now, { locale: 'en-US', timeZone: 'Asia/Tokyo' });
    expect(tokyo).toEqual([
      { day: 'Sunday, March 10', continues: false },
      { day: null, continues: true },
    ]);
  });

  it('breaks a group where asked (the unread divider), and keeps a message without a time in the day before', () => {
    const l = layoutOf([msg('ann', '2024-03-11T10:00:00Z', 1), msg('ann', '2024-03-11T10:01:00Z', 2), { sender_id: 'ann', created_at: 0, seq: 3 }], now, {
      ...o,
      breakBefore: (m) => m.seq === 2,
    });
    expect(l).toEqual([
      { day: 'Today', continues: false },
      { day: null, continues: false },
      { day: null, continues: false },
    ]);
    expect(layoutOf([], now, o)).toEqual([]);
  });
});

describe('sizes', () => {
  it('says bytes below a kilobyte, and one unit with at most one decimal above', () => {
    expect(sizeOf(0)).toBe('0 bytes');
    expect(sizeOf(1)).toBe('1 byte');
    expect(sizeOf(1023)).toBe('1023 bytes');
    expect(sizeOf(1024)).toBe('1 KB');
    expect(sizeOf(1536)).toBe('1.5 KB');
    expect(sizeOf(48 * 1024 + 30)).toBe('48 KB');
    expect(sizeOf(1024 * 1024 - 1)).toBe('1 MB');
    expect(sizeOf(3.45 * 1024 * 1024)).toBe('3.5 MB');
    expect(sizeOf(100 * 1024 * 1024)).toBe('100 MB');
    expect(sizeOf(5 * 1024 ** 3)).toBe('5 GB');
    expect(sizeOf(-1)).toBe('');
  });
});
