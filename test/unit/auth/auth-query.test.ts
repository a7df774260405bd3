// AuthQuery's bounds, with node-postgres replaced by a controllable fake: the
// verifier cache's cap and LRU order, the short life of "no such user", the
// 3D000 memory per target, the cap on lookups running at once with its FIFO
// queue, and the cap on pools.
import { beforeEach, describe, expect, it, vi } from 'vitest';

interface PendingQuery {
  database: string;
  user: string;
  resolve(rows: Array<{ password: string | null }>): void;
  reject(err: Error & { code?: string }): void;
}

const fake = vi.hoisted(() => ({ pending: [] as PendingQuery[], created: [] as string[], ended: [] as string[] }));

vi.mock('pg', () => {
  class Pool {
    constructor(private readonly options: { database: string }) {
      fake.created.push(options.database);
    }
    on(): this {
      return this;
    }
    query(_sql: string, [user]: [string]): Promise<{ rows: Array<{ password: string | null }> }> {
      return new Promise((resolve, reject) => fake.pending.push({ database: this.options.database, user, resolve: (rows) => resolve({ rows }), reject }));
    }
    end(): Promise<void> {
      fake.ended.push(this.options.database);
      return Promise.resolve();
    }
  }
  return { default: { Pool } };
});

const { AuthQuery, AuthQueryError, LookupLimiter, MAX_AUTH_POOLS, MISSING_DATABASE_TTL_MS, NEGATIVE_CACHE_TTL_MS, WAITING_LOOKUPS_PER_SLOT } = await import('../../../src/auth/auth-query.js');
const { createLogger } = await import('../../../src/log/logger.js');
const { processCounters } = await import('../../../src/stats/process-counters.js');

let now = 1_000_000;
const target = (dbname = 'app') => ({ host: 'db', port: 5432, dbname });

function authQuery(over: { cacheSize?: number; cacheTtlMs?: number; maxConcurrentLookups?: number } = {}) {
  return new AuthQuery(
    { user: 'pgbouncer', password: null, query: 'SELECT $1', connectTimeoutMs: 1000, cacheTtlMs: 10_000, cacheSize: 100, maxConcurrentLookups: 4, now: () => now, ...over },
    createLogger('silent'),
  );
}

/** Lets the promise chains inside AuthQuery run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Answers the oldest pending query. */
async function answer(rows: Array<{ password: string | null }>): Promise<void> {
  const q = fake.pending.shift();
  if (!q) throw new Error('no query pending');
  q.resolve(rows);
  await settle();
}

beforeEach(() => {
  fake.pending.length = 0;
  fake.created.length = 0;
  fake.ended.length = 0;
  now = 1_000_000;
});

describe('AuthQuery cache', () => {
  it('reuses a verifier for auth_cache_ttl, then asks again', async () => {
    const aq = authQuery();
    const first = aq.lookup(target(), 'alice');
    await settle();
    await answer([{ password: 'SCRAM-SHA-256$…' }]);
    expect(await first).toBe('SCRAM-SHA-256$…');
    now += 9_999;
    expect(await aq.lookup(target(), 'alice')).toBe('SCRAM-SHA-256$…');
    expect(fake.pending).toHaveLength(0);
    now += 1;
    void aq.lookup(target(), 'alice');
    await settle();
    expect(fake.pending).toHaveLength(1);
  });

  it('keeps "no such user" only NEGATIVE_CACHE_TTL_MS (3 s), and never longer than auth_cache_ttl', async () => {
    expect(NEGATIVE_CACHE_TTL_MS).toBe(3000);
    const aq = authQuery();
    void aq.lookup(target(), 'ghost');
    await settle();
    await answer([]);
    now += 2_999;
    expect(await aq.lookup(target(), 'ghost')).toBeNull();
    expect(fake.pending).toHaveLength(0);
    now += 1;
    void aq.lookup(target(), 'ghost');
    await settle();
    expect(fake.pending).toHaveLength(1);
    await answer([]);

    const short = authQuery({ cacheTtlMs: 1000 });
    void short.lookup(target(), 'nullpw');
    await settle();
    await answer([{ password: null }]);
    now += 999;
    expect(await short.lookup(target(), 'nullpw')).toBeNull();
    now += 1;
    void short.lookup(target(), 'nullpw');
    await settle();
    expect(fake.pending).toHaveLength(1);
  });

  it('holds at most auth_cache_size entries under random user names, the least recently used evicted', async () => {
    const aq = authQuery({ cacheSize: 50, maxConcurrentLookups: 1000 });
    for (let i = 0; i < 500; i++) void aq.lookup(target(), `random-${i}`);
    await settle();
    while (fake.pending.length > 0) await answer([]);
    expect(aq.usage.cached).toBe(50);
    expect(aq.usage.inflight).toBe(0);
    // The newest 50 are cached; an older one needs a new lookup.
    expect(await aq.lookup(target(), 'random-499')).toBeNull();
    void aq.lookup(target(), 'random-0');
    await settle();
    expect(fake.pending.map((q) => q.user)).toEqual(['random-0']);
  });

  it('shares one lookup between concurrent logins of one user', async () => {
    const aq = authQuery();
    const a = aq.lookup(target(), 'bob');
    const b = aq.lookup(target(), 'bob');
    await settle();
    expect(fake.pending).toHaveLength(1);
    await answer([{ password: 'md5abc' }]);
    expect(await Promise.all([a, b])).toEqual(['md5abc', 'md5abc']);
  });
});

describe('AuthQuery: databases that do not exist', () => {
  const noDatabase = () => Object.assign(new Error('database "x" does not exist'), { code: '3D000' });

  it('answers 3D000 for a target from memory for MISSING_DATABASE_TTL_MS, whatever the user, and keeps no pool for it', async () => {
    const aq = authQuery();
    const first = aq.lookup(target('invented'), 'u1');
    await settle();
    fake.pending.shift()!.reject(noDatabase());
    await expect(first).rejects.toMatchObject({ kind: 'no_database' });
    expect(fake.ended).toEqual(['invented']);
    expect(aq.usage.pools).toBe(0);
    for (const user of ['u1', 'u2', 'u3']) await expect(aq.lookup(target('invented'), user)).rejects.toBeInstanceOf(AuthQueryError);
    expect(fake.pending).toHaveLength(0);
    expect(fake.created).toEqual(['invented']);
    now += MISSING_DATABASE_TTL_MS;
    void aq.lookup(target('invented'), 'u1').catch(() => undefined);
    await settle();
    expect(fake.pending).toHaveLength(1);
  });

  it('keeps at most MAX_AUTH_POOLS pools, ending the least recently used', async () => {
    const aq = authQuery({ maxConcurrentLookups: 1000 });
    for (let i = 0; i <= MAX_AUTH_POOLS; i++) void aq.lookup(target(`db${i}`), 'u');
    await settle();
    expect(aq.usage.pools).toBe(MAX_AUTH_POOLS);
    expect(fake.ended).toEqual(['db0']);
  });
});

describe('AuthQuery: concurrent lookups', () => {
  it('runs at most auth_max_concurrent_lookups, queues the next ones in order, refuses beyond the queue with kind busy', async () => {
    const aq = authQuery({ maxConcurrentLookups: 2 });
    const queueLength = 2 * WAITING_LOOKUPS_PER_SLOT;
    const results: Array<Promise<string | null>> = [];
    for (let i = 0; i < 2 + queueLength; i++) results.push(aq.lookup(target(), `u${i}`));
    await settle();
    expect(aq.usage).toMatchObject({ running: 2, waiting: queueLength });
    expect(fake.pending.map((q) => q.user)).toEqual(['u0', 'u1']);

    const rejectedBefore = processCounters.authLookupsRejected;
    await expect(aq.lookup(target(), 'one-too-many')).rejects.toMatchObject({ kind: 'busy' });
    expect(processCounters.authLookupsRejected).toBe(rejectedBefore + 1);

    // Each answer hands its slot to the oldest waiter.
    await answer([]);
    expect(fake.pending.map((q) => q.user)).toEqual(['u1', 'u2']);
    expect(aq.usage).toMatchObject({ running: 2, waiting: queueLength - 1 });
    while (fake.pending.length > 0) await answer([]);
    expect(await Promise.all(results)).toEqual(results.map(() => null));
    expect(aq.usage).toMatchObject({ running: 0, waiting: 0, inflight: 0 });
  });

  it('frees the slot of a lookup that failed', async () => {
    const limiter = new LookupLimiter(1, 0);
    await expect(limiter.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(limiter.running).toBe(0);
    expect(await limiter.run(() => Promise.resolve(7))).toBe(7);
  });

  it('needs no slot for a cached user, so known users log in during a flood', async () => {
    const aq = authQuery({ maxConcurrentLookups: 1 });
    void aq.lookup(target(), 'known');
    await settle();
    await answer([{ password: 'md5known' }]);
    for (let i = 0; i < 1 + WAITING_LOOKUPS_PER_SLOT; i++) void aq.lookup(target(), `flood-${i}`);
    await settle();
    await expect(aq.lookup(target(), 'flood-x')).rejects.toMatchObject({ kind: 'busy' });
    expect(await aq.lookup(target(), 'known')).toBe('md5known');
  });
});
