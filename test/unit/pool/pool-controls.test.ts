// The operators' controls on a pool and the pool manager, against fake servers:
// PAUSE/RESUME, RECONNECT and close_needed, and reloaded settings (a new
// address, a new pool_mode once the clients have left, a new size), with the
// fake servers of ./fakes.ts.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Budget } from '../../../src/budget/budget.js';
import { PoolManager } from '../../../src/pool/manager.js';
import { Pool, type PoolLimits } from '../../../src/pool/pool.js';
import type { ServerAddress } from '../../../src/pool/server.js';
import { log, CREDENTIALS, FakeServer, FakeConnector, ADDRESS, settings, noLimits, makePool, settle, track, asServer } from './fakes.js';

/** Acquires and gives back `n` servers, leaving them idle. */
async function idleServers(pool: Pool, n: number): Promise<FakeServer[]> {
  const held = Array.from({ length: n }, () => track(pool.acquire()));
  await settle();
  const servers = held.map((t) => t.server!);
  for (const s of servers) pool.release(asServer(s), false);
  await settle();
  return servers;
}

describe('Pool: PAUSE and RESUME', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('closes idle servers at once, hands out none and opens none while paused; RESUME serves the waiter', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 2 });
    const [idle] = await idleServers(pool, 1);
    pool.pause();
    expect(pool.isPaused).toBe(true);
    await settle();
    expect(idle!.closed).toBe(true);
    expect(pool.total).toBe(0);
    expect(pool.takeIdleNow()).toBeNull();
    const calls = connector.calls;
    const waiting = track(pool.acquire());
    await vi.advanceTimersByTimeAsync(5_000);
    pool.tick(Date.now());
    await settle();
    expect(waiting.server).toBeNull();
    expect(waiting.error).toBeNull();
    expect(connector.calls).toBe(calls);
    expect(pool.hasWaiters).toBe(true);

    pool.resume();
    expect(pool.isPaused).toBe(false);
    await settle();
    expect(waiting.server).not.toBeNull();
    expect(waiting.server!.closed).toBe(false);
  });

  it('takeIdleNow gives no server while paused, even one that is idle', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 1 });
    await idleServers(pool, 1);
    pool.pause();
    expect(pool.takeIdleNow()).toBeNull();
    pool.resume();
    const t = track(pool.acquire());
    await settle();
    expect(pool.takeIdleNow()).toBeNull(); // in use now
    pool.release(asServer(t.server!), false);
    expect(pool.takeIdleNow()).toBe(asServer(t.server!));
  });

  it('closes a server given back while paused, so the pool empties as clients finish', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 2 });
    const a = track(pool.acquire());
    const b = track(pool.acquire());
    await settle();
    pool.pause();
    expect(pool.total).toBe(2); // in use: left to their clients
    pool.release(asServer(a.server!), false);
    await settle();
    expect(a.server!.closed).toBe(true);
    expect(pool.total).toBe(1);
    pool.release(asServer(b.server!), true);
    await settle();
    expect(b.server!.closed).toBe(true);
    expect(pool.total).toBe(0);
  });

  it('closes a server given back while paused without running server_reset_query on it first', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 1, resetQuery: 'DISCARD ALL' });
    const t = track(pool.acquire());
    await settle();
    pool.pause();
    pool.release(asServer(t.server!), true);
    await settle();
    expect(t.server!.closed).toBe(true);
    expect(t.server!.ran).toEqual([]);
  });

  it('opens no server for a budget grant that arrives after PAUSE', async () => {
    const connector = new FakeConnector();
    const asked: Array<{ kind: 'demand' | 'fill'; count: number }> = [];
    const later: PoolLimits = { ...noLimits, request: (_pool, kind, count) => void asked.push({ kind, count }) };
    const pool = new Pool('app', ADDRESS, settings(connector, { size: 2 }), later, log);
    pool.setCredentials(CREDENTIALS);
    const waiting = track(pool.acquire());
    expect(asked).toEqual([{ kind: 'demand', count: 1 }]);
    pool.pause();
    pool.granted('demand', 1);
    await settle();
    expect(connector.calls).toBe(0);
    expect(waiting.server).toBeNull();
  });

  it('closes a server that finishes logging in while paused, and keeps its waiter waiting', async () => {
    const connector = new FakeConnector();
    connector.auto = false;
    const pool = makePool(connector, { size: 1 });
    const waiting = track(pool.acquire());
    await settle();
    expect(connector.pending).toHaveLength(1);
    pool.pause();
    const late = connector.succeed();
    await settle();
    expect(late.closed).toBe(true);
    expect(waiting.server).toBeNull();
    expect(pool.total).toBe(0);
    expect(connector.calls).toBe(1);
  });

  it('does not open min_pool_size servers while paused, and does after RESUME', async () => {
    const connector = new FakeConnector();
    const pool = new Pool('app', ADDRESS, settings(connector, { size: 3, minSize: 2 }), noLimits, log);
    pool.pause();
    pool.setCredentials(CREDENTIALS);
    pool.tick(Date.now());
    await settle();
    expect(connector.calls).toBe(0);
    pool.resume();
    await settle();
    expect(connector.calls).toBe(2);
    expect(pool.idleCount).toBe(2);
  });
});

describe('Pool: RECONNECT and close_needed', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('closes idle servers now and marks servers in use, closing them when given back', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 3 });
    const [idle] = await idleServers(pool, 1);
    const busy = track(pool.acquire());
    await settle();
    expect(busy.server).toBe(idle); // LIFO reuse: take the idle one back
    const other = track(pool.acquire());
    const third = track(pool.acquire());
    await settle();
    pool.release(asServer(third.server!), false); // idle at RECONNECT
    pool.reconnect();
    await settle();
    expect(third.server!.closed).toBe(true);
    expect(pool.closeNeededCount).toBe(2);
    expect(pool.isCloseNeeded(asServer(busy.server!))).toBe(true);
    expect(pool.isCloseNeeded(asServer(other.server!))).toBe(true);
    expect(busy.server!.closed).toBe(false);

    pool.release(asServer(busy.server!), false);
    await settle();
    expect(busy.server!.closed).toBe(true);
    expect(pool.closeNeededCount).toBe(1);
    pool.discard(asServer(other.server!));
    await settle();
    expect(pool.closeNeededCount).toBe(0);
  });

  it('marks a server being opened at RECONNECT: it is closed when it logs in, and a fresh one serves the waiter', async () => {
    const connector = new FakeConnector();
    connector.auto = false;
    const pool = makePool(connector, { size: 1 });
    const waiting = track(pool.acquire());
    await settle();
    pool.reconnect();
    const old = connector.succeed();
    await settle();
    expect(old.closed).toBe(true);
    expect(pool.closeNeededCount).toBe(0);
    expect(connector.pending).toHaveLength(1);
    const fresh = connector.succeed();
    await settle();
    expect(waiting.server).toBe(fresh);
    expect(pool.isCloseNeeded(asServer(fresh))).toBe(false);
  });

  it('counts a marked server gone once its socket closes, however it closed', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 1 });
    const t = track(pool.acquire());
    await settle();
    pool.reconnect();
    expect(pool.closeNeededCount).toBe(1);
    t.server!.close(); // the server went away by itself
    await settle();
    expect(pool.closeNeededCount).toBe(0);
  });

  it('servers opened after RECONNECT are not marked', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 2 });
    const a = track(pool.acquire());
    await settle();
    pool.reconnect();
    const b = track(pool.acquire());
    await settle();
    expect(pool.isCloseNeeded(asServer(a.server!))).toBe(true);
    expect(pool.isCloseNeeded(asServer(b.server!))).toBe(false);
    pool.release(asServer(b.server!), false);
    await settle();
    expect(b.server!.closed).toBe(false);
    expect(pool.idleCount).toBe(1);
  });
});

describe('Pool: reconfigure (reloaded settings)', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  const moved: ServerAddress = { ...ADDRESS, host: '10.0.0.2', dbname: 'app_v2' };

  it('a new address: idle servers close now, busy ones when given back, new servers go to the new address', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 2 });
    const [idle] = await idleServers(pool, 1);
    const busy = track(pool.acquire());
    await settle();
    const busyServer = busy.server!;
    const fresh = track(pool.acquire());
    await settle();
    pool.release(asServer(fresh.server!), false);
    expect(connector.opened).toHaveLength(2);
    expect(busyServer).toBe(idle);
    pool.reconfigure(settings(connector, { size: 2 }), moved);
    await settle();
    expect(pool.address).toEqual(moved);
    expect(fresh.server!.closed).toBe(true);
    expect(pool.isCloseNeeded(asServer(busyServer))).toBe(true);
    pool.release(asServer(busyServer), false);
    await settle();
    expect(busyServer.closed).toBe(true);
    const next = track(pool.acquire());
    await settle();
    expect(next.server!.address).toEqual(moved);
  });

  it('the same address (another user is no other target) closes nothing', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 2 });
    const [idle] = await idleServers(pool, 1);
    pool.reconfigure(settings(connector, { size: 5 }), { ...ADDRESS });
    await settle();
    expect(idle!.closed).toBe(false);
    expect(pool.size).toBe(5);
    expect(pool.closeNeededCount).toBe(0);
  });

  it('keeps its connector when the reloaded settings have none', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 1 });
    const { connect: _, ...withoutConnector } = settings(connector, { size: 2 });
    pool.reconfigure(withoutConnector, ADDRESS);
    track(pool.acquire());
    await settle();
    expect(connector.calls).toBe(1);
  });

  it('a larger pool_size lets waiting clients get servers at once', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 1 });
    track(pool.acquire());
    const second = track(pool.acquire());
    await settle();
    expect(second.server).toBeNull();
    pool.reconfigure(settings(connector, { size: 2 }), ADDRESS);
    await settle();
    expect(second.server).not.toBeNull();
  });

  it('a new pool_mode waits until the clients have left, then applies and replaces the servers', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 2, mode: 'transaction', maxPrepared: 10 });
    pool.clientJoined();
    pool.clientJoined();
    const [idle] = await idleServers(pool, 1);
    pool.reconfigure(settings(connector, { size: 3, mode: 'session', maxPrepared: 0 }), ADDRESS);
    await settle();
    expect(pool.mode).toBe('transaction'); // its clients' sessions run in the mode they logged in with
    expect(pool.size).toBe(3); // the rest applies now
    expect(idle!.closed).toBe(false);
    pool.clientLeft();
    expect(pool.mode).toBe('transaction');
    pool.clientLeft();
    await settle();
    expect(pool.mode).toBe('session');
    expect(idle!.closed).toBe(true); // its statements were renamed for transaction mode
  });

  it('a new pool_mode with no client applies at once; a reverted one cancels the pending change', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { mode: 'transaction' });
    pool.reconfigure(settings(connector, { mode: 'session' }), ADDRESS);
    expect(pool.mode).toBe('session');

    pool.clientJoined();
    pool.reconfigure(settings(connector, { mode: 'statement' }), ADDRESS);
    pool.reconfigure(settings(connector, { mode: 'session' }), ADDRESS); // reloaded back before the client left
    pool.clientLeft();
    expect(pool.mode).toBe('session');
  });

  it('a reloaded server_idle_timeout applies to servers already idle', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 1, idleTimeoutMs: 0 });
    const [idle] = await idleServers(pool, 1);
    pool.reconfigure(settings(connector, { size: 1, idleTimeoutMs: 1_000 }), ADDRESS);
    await vi.advanceTimersByTimeAsync(2_000);
    pool.tick(Date.now());
    await settle();
    expect(idle!.closed).toBe(true);
  });

  // Defect: a server's expiry is fixed when it opens (pool.ts open(): expiresAt from the lifetime then), so a reloaded
  // server_lifetime reaches new servers only; from 0 (never) to 1 s, the servers open now are never closed for age.
  // The issue asks timeouts to apply at once; PgBouncer compares a server's age with the current server_lifetime.
  it('a reloaded server_lifetime applies to servers already open', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 1, lifetimeMs: 0 });
    const [idle] = await idleServers(pool, 1);
    pool.reconfigure(settings(connector, { size: 1, lifetimeMs: 1_000 }), ADDRESS);
    await vi.advanceTimersByTimeAsync(2_000);
    pool.tick(Date.now());
    await settle();
    expect(idle!.closed).toBe(true);
  });

  // Defect: reconfigure() applies a smaller pool_size to new servers only; idle servers above it stay and are handed out, so the
  // pool keeps serving at the old size. PgBouncer's janitor (check_pool_size) closes the excess: "too many servers in the pool".
  it('a smaller pool_size closes the idle servers above it', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 3 });
    await idleServers(pool, 3);
    pool.reconfigure(settings(connector, { size: 1 }), ADDRESS);
    pool.tick(Date.now());
    await settle();
    expect(pool.total).toBeLessThanOrEqual(1);
  });
});

describe('PoolManager: PAUSE, RESUME, DISABLE', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  function managerWith(connector: FakeConnector) {
    const manager = new PoolManager(log, Budget.local());
    const get = (db: string, user = 'alice'): Pool => {
      const pool = manager.get(db, { ...ADDRESS, dbname: db, user }, settings(connector, { size: 2 }));
      pool.setCredentials(CREDENTIALS);
      return pool;
    };
    return { manager, get };
  }

  it('of(db) lists the pools of that database, of(null) all of them', () => {
    const { manager, get } = managerWith(new FakeConnector());
    const a = get('app', 'alice');
    const b = get('app', 'bob');
    const o = get('other');
    expect([...manager.of('app')]).toEqual([a, b]);
    expect([...manager.of('other')]).toEqual([o]);
    expect([...manager.of('none')]).toEqual([]);
    expect([...manager.of(null)]).toEqual([a, b, o]);
  });

  it('PAUSE db pauses its pools, and one made later, but no other database', () => {
    const { manager, get } = managerWith(new FakeConnector());
    const a = get('app');
    const o = get('other');
    manager.pause('app');
    expect(a.isPaused).toBe(true);
    expect(o.isPaused).toBe(false);
    expect(manager.isPaused('app')).toBe(true);
    expect(manager.isPaused('other')).toBe(false);
    expect(manager.allPaused).toBe(false);
    expect(get('app', 'bob').isPaused).toBe(true);
    expect(get('third').isPaused).toBe(false);
    manager.resume('app');
    expect(a.isPaused).toBe(false);
    expect(get('app', 'bob').isPaused).toBe(false);
  });

  it('PAUSE alone pauses every pool and every pool made later; RESUME db does not lift it for that database', () => {
    const { manager, get } = managerWith(new FakeConnector());
    const a = get('app');
    manager.pause(null);
    expect(manager.allPaused).toBe(true);
    expect(a.isPaused).toBe(true);
    expect(get('new').isPaused).toBe(true);
    manager.resume('app');
    expect(a.isPaused).toBe(true);
    expect(manager.isPaused('app')).toBe(true);
  });

  it('RESUME alone resumes per-database pauses too', () => {
    const { manager, get } = managerWith(new FakeConnector());
    const a = get('app');
    const o = get('other');
    manager.pause('app');
    manager.pause(null);
    manager.resume(null);
    expect(a.isPaused).toBe(false);
    expect(o.isPaused).toBe(false);
    expect(manager.isPaused('app')).toBe(false);
    expect(get('app', 'bob').isPaused).toBe(false);
  });

  it('a pool made while paused holds its clients until RESUME', async () => {
    const connector = new FakeConnector();
    const { manager, get } = managerWith(connector);
    manager.pause('app');
    const pool = get('app');
    const waiting = track(pool.acquire());
    await settle();
    expect(connector.calls).toBe(0);
    manager.resume('app');
    await settle();
    expect(waiting.server).not.toBeNull();
  });

  it('DISABLE and ENABLE mark a database, and only that one', () => {
    const { manager } = managerWith(new FakeConnector());
    expect(manager.isDisabled('app')).toBe(false);
    manager.setDisabled('app', true);
    expect(manager.isDisabled('app')).toBe(true);
    expect(manager.isDisabled('other')).toBe(false);
    manager.setDisabled('app', false);
    expect(manager.isDisabled('app')).toBe(false);
  });
});
