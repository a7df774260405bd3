// ExpiringLru: the size cap, least-recently-used eviction order, expiry on read
// and the sweep a write runs, on a fake clock.
import { describe, expect, it } from 'vitest';
import { ExpiringLru } from '../../../src/auth/expiring-lru.js';

function clock(start = 1_000_000): { now: () => number; advance(ms: number): void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

describe('ExpiringLru', () => {
  it('never holds more than its capacity, evicting the least recently used first', () => {
    const c = clock();
    const lru = new ExpiringLru<number>(3, { now: c.now });
    lru.set('a', 1, 10_000);
    lru.set('b', 2, 10_000);
    lru.set('c', 3, 10_000);
    expect(lru.get('a')).toBe(1); // a becomes the most recently used: b is now the oldest
    lru.set('d', 4, 10_000);
    expect(lru.size).toBe(3);
    expect(lru.keys()).toEqual(['c', 'a', 'd']);
    expect(lru.get('b')).toBeUndefined();
    lru.set('c', 33, 10_000); // re-setting refreshes too
    lru.set('e', 5, 10_000);
    expect(lru.keys()).toEqual(['d', 'c', 'e']);
    expect(lru.get('c')).toBe(33);
  });

  it('stays at its cap under a stream of 100 000 distinct keys', () => {
    const lru = new ExpiringLru<null>(500);
    for (let i = 0; i < 100_000; i++) lru.set(`user-${i}`, null, 60_000);
    expect(lru.size).toBe(500);
    expect(lru.keys()[0]).toBe('user-99500');
  });

  it('treats an expired entry as absent and drops it when read', () => {
    const c = clock();
    const lru = new ExpiringLru<string | null>(10, { now: c.now });
    lru.set('k', null, 1000);
    c.advance(999);
    expect(lru.get('k')).toBeNull(); // null is a value (no such user), not a miss
    c.advance(1);
    expect(lru.get('k')).toBeUndefined();
    expect(lru.size).toBe(0);
  });

  it('sweeps every expired entry on the first write after sweepEveryMs, and not before', () => {
    const c = clock();
    const lru = new ExpiringLru<number>(100, { now: c.now, sweepEveryMs: 1000 });
    for (let i = 0; i < 50; i++) lru.set(`short-${i}`, i, 100);
    lru.set('long', 1, 60_000);
    c.advance(500);
    lru.set('x', 0, 60_000); // no sweep yet: the expired entries still count
    expect(lru.size).toBe(52);
    c.advance(500);
    lru.set('y', 0, 60_000);
    expect(lru.size).toBe(3);
    expect(lru.keys()).toEqual(['long', 'x', 'y']);
  });

  it('sweep() removes only expired entries and says how many', () => {
    const c = clock();
    const lru = new ExpiringLru<number>(10, { now: c.now });
    lru.set('a', 1, 100);
    lru.set('b', 2, 200);
    c.advance(150);
    expect(lru.sweep()).toBe(1);
    expect(lru.keys()).toEqual(['b']);
  });

  it('sweepIfDue() (the janitor) sheds expired entries without a write, at most once per sweepEveryMs', () => {
    const c = clock();
    const lru = new ExpiringLru<number>(100, { now: c.now, sweepEveryMs: 1000 });
    for (let i = 0; i < 20; i++) lru.set(`u${i}`, i, 100);
    c.advance(500);
    lru.sweepIfDue(); // not due yet
    expect(lru.size).toBe(20);
    c.advance(500);
    lru.sweepIfDue();
    expect(lru.size).toBe(0);
  });

  it('refuses a capacity below 1', () => {
    expect(() => new ExpiringLru(0)).toThrow(RangeError);
  });
});
