// AuthThrottle on a fake clock: the window, the block, what a block covers
// (one address, one database), the bounded address map, and the counters.
import { describe, expect, it } from 'vitest';
import { AuthThrottle, THROTTLED_SQLSTATE, clientAddress } from '../../../src/auth/throttle.js';
import { processCounters } from '../../../src/stats/process-counters.js';

function throttle(over: { limit?: number; windowMs?: number; blockMs?: number; maxEntries?: number } = {}) {
  const clock = { t: 5_000_000 };
  const t = new AuthThrottle({ limit: 3, windowMs: 10_000, blockMs: 30_000, now: () => clock.t, ...over });
  return { t, clock };
}

const fail = (t: AuthThrottle, n: number, address = '10.0.0.1', db = 'app') => {
  for (let i = 0; i < n; i++) t.recordFailure(address, db);
};

describe('AuthThrottle', () => {
  it('refuses an address for blockMs once it failed `limit` times within the window', () => {
    const { t, clock } = throttle();
    fail(t, 2);
    expect(t.refusal('10.0.0.1', 'app')).toBeNull();
    fail(t, 1);
    const refused = t.refusal('10.0.0.1', 'app');
    expect(refused).toMatchObject({ severity: 'FATAL', code: THROTTLED_SQLSTATE });
    expect(refused!.message).toBe('too many failed login attempts from this address for database "app"; wait 30 s before trying again');
    clock.t += 29_001;
    expect(t.refusal('10.0.0.1', 'app')!.message).toContain('wait 1 s');
    clock.t += 999;
    expect(t.refusal('10.0.0.1', 'app')).toBeNull();
  });

  it('forgets failures older than the window', () => {
    const { t, clock } = throttle();
    fail(t, 2);
    clock.t += 10_000;
    fail(t, 2);
    expect(t.refusal('10.0.0.1', 'app')).toBeNull();
    fail(t, 1);
    expect(t.refusal('10.0.0.1', 'app')).not.toBeNull();
  });

  it('blocks only that address for that database', () => {
    const { t } = throttle();
    fail(t, 3);
    expect(t.refusal('10.0.0.1', 'app')).not.toBeNull();
    expect(t.refusal('10.0.0.1', 'other')).toBeNull();
    expect(t.refusal('10.0.0.2', 'app')).toBeNull();
  });

  it('starts counting afresh after a block ends', () => {
    const { t, clock } = throttle();
    fail(t, 3);
    clock.t += 30_000;
    fail(t, 2);
    expect(t.refusal('10.0.0.1', 'app')).toBeNull();
    fail(t, 1);
    expect(t.refusal('10.0.0.1', 'app')).not.toBeNull();
  });

  it('does nothing with limit 0, but still counts failures', () => {
    const { t } = throttle({ limit: 0 });
    const before = processCounters.authFailures;
    fail(t, 100);
    expect(t.refusal('10.0.0.1', 'app')).toBeNull();
    expect(t.size).toBe(0);
    expect(processCounters.authFailures).toBe(before + 100);
  });

  it('counts each refusal in processCounters.authThrottled', () => {
    const { t } = throttle({ limit: 1 });
    fail(t, 1);
    const before = processCounters.authThrottled;
    t.refusal('10.0.0.1', 'app');
    t.refusal('10.0.0.1', 'app');
    t.refusal('10.0.0.9', 'app'); // not blocked: not counted
    expect(processCounters.authThrottled).toBe(before + 2);
  });

  it('remembers at most maxEntries addresses, and lets expired ones go', () => {
    const { t, clock } = throttle({ maxEntries: 100, windowMs: 1000, blockMs: 1000 });
    for (let i = 0; i < 10_000; i++) t.recordFailure(`10.1.${i >> 8}.${i & 255}`, 'app');
    expect(t.size).toBe(100);
    clock.t += 1001;
    t.recordFailure('10.9.9.9', 'app'); // a write sweeps what expired
    expect(t.size).toBe(1);
  });
});

describe('clientAddress', () => {
  it('reads remoteAddress; a socket without one shares a single key, so it is throttled too', () => {
    expect(clientAddress({ remoteAddress: '::ffff:127.0.0.1' })).toBe('::ffff:127.0.0.1');
    expect(clientAddress({ remoteAddress: undefined })).toBe('unknown');
    expect(clientAddress({})).toBe('unknown');
  });
});
