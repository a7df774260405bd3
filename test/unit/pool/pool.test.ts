// Pool and PoolManager against fake servers: waiting, timeouts, the reserve
// pool, min_pool_size, idle and lifetime closes, check and reset queries, login
// failures, shared limits, unused pools, and servers held while being canceled.
import net from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CancelRegistry } from '../../../src/pool/cancel.js';
import { Budget, IDLE_GRACE_MS } from '../../../src/budget/budget.js';
import { PoolManager } from '../../../src/pool/manager.js';
import { Pool, type PoolSettings } from '../../../src/pool/pool.js';
import type { ServerAddress } from '../../../src/pool/server.js';
import { PgError } from '../../../src/protocol/pg-error.js';
import { log, CREDENTIALS, FakeConnector, ADDRESS, settings, noLimits, makePool, settle, track, asServer } from './fakes.js';

describe('Pool', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('opens servers through the connector it is given', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector);
    const a = track(pool.acquire());
    await settle();
    expect(connector.calls).toBe(1);
    expect(a.server).toBe(connector.opened[0]);
    expect(pool.total).toBe(1);
  });

  it('keeps the welcome of its newest server: session defaults and superuser status, for logins without a server', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 2 });
    expect(pool.welcome).toBeNull(); // nothing logged in yet: the first login must go upstream
    const a = track(pool.acquire());
    await settle();
    expect(pool.welcome).toMatchObject({ superuser: false, superuserMember: false });
    expect(pool.welcome!.params.get('application_name')).toBe('');
    const b = track(pool.acquire());
    await settle();
    expect(b.server).toBe(connector.opened[1]);
    expect(pool.welcome!.params).toBe(connector.opened[1]!.initialParams); // refreshed by the newer server
    expect(a.server).toBe(connector.opened[0]);
  });

  it('serves waiting clients first come, first served', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 1 });
    const a = track(pool.acquire());
    await settle();
    const b = track(pool.acquire());
    const c = track(pool.acquire());
    await settle();
    expect([b.server, c.server]).toEqual([null, null]);
    expect(pool.state(Date.now()).waiting).toBe(2);
    expect(connector.calls).toBe(1); // pool_size 1: nobody opens a second server

    pool.release(asServer(a.server!), false);
    await settle();
    expect(b.server).toBe(a.server);
    expect(c.server).toBeNull();
    pool.release(asServer(b.server!), false);
    await settle();
    expect(c.server).toBe(a.server);
  });

  it('takeIdleNow gives nothing while someone waits (FIFO), and an idle server otherwise', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 1 });
    const a = track(pool.acquire());
    await settle();
    const b = track(pool.acquire());
    expect(pool.takeIdleNow()).toBeNull();
    pool.release(asServer(a.server!), false);
    await settle();
    expect(b.server).toBe(a.server);
    pool.release(asServer(b.server!), false);
    expect(pool.takeIdleNow()).toBe(asServer(a.server!));
  });

  it('query_wait_timeout: a client waiting longer gets 53300 and leaves the line', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 1, waitTimeoutMs: 2000 });
    track(pool.acquire());
    await settle();
    const b = track(pool.acquire());
    await vi.advanceTimersByTimeAsync(1999);
    expect(b.error).toBeNull();
    await vi.advanceTimersByTimeAsync(1);
    expect(b.error).toBeInstanceOf(PgError);
    expect((b.error as PgError).code).toBe('53300');
    expect(b.error!.message).toMatch(/query_wait_timeout/);
    expect(pool.state(Date.now()).waiting).toBe(0);
  });

  it('reserve pool: one more server once the oldest client has waited reserve_pool_timeout', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 1, reserveSize: 1, reserveTimeoutMs: 3000 });
    track(pool.acquire());
    await settle();
    const b = track(pool.acquire());
    await vi.advanceTimersByTimeAsync(2999);
    pool.tick(Date.now());
    await settle();
    expect(connector.calls).toBe(1);
    expect(b.server).toBeNull();
    await vi.advanceTimersByTimeAsync(1);
    pool.tick(Date.now());
    await settle();
    expect(connector.calls).toBe(2);
    expect(b.server).toBe(connector.opened[1]);
    // The reserve is for waiters only: nothing more is opened for nobody.
    pool.tick(Date.now());
    await settle();
    expect(connector.calls).toBe(2);
  });

  it('min_pool_size: servers are opened once credentials are known, and refilled after they close', async () => {
    const connector = new FakeConnector();
    const pool = new Pool('app', ADDRESS, settings(connector, { size: 5, minSize: 2 }), noLimits, log);
    expect(connector.calls).toBe(0); // no credentials yet: nothing to log in with
    pool.setCredentials(CREDENTIALS);
    await settle();
    expect(connector.calls).toBe(2);
    expect(pool.state(Date.now()).idle).toBe(2);
    connector.opened[0]!.close();
    await settle();
    expect(pool.total).toBe(1);
    pool.tick(Date.now());
    await settle();
    expect(connector.calls).toBe(3);
    expect(pool.total).toBe(2);
  });

  it('server_idle_timeout closes servers idle too long, down to min_pool_size', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 3, minSize: 1, idleTimeoutMs: 10_000 });
    await settle();
    const a = track(pool.acquire());
    const b = track(pool.acquire());
    await settle();
    expect(pool.total).toBe(2);
    pool.release(asServer(a.server!), false);
    pool.release(asServer(b.server!), false);
    await vi.advanceTimersByTimeAsync(9_000);
    pool.tick(Date.now());
    expect(pool.total).toBe(2);
    await vi.advanceTimersByTimeAsync(1_500);
    pool.tick(Date.now());
    await settle();
    expect(pool.total).toBe(1);
    expect(connector.opened.filter((s) => s.closed)).toHaveLength(1);
  });

  it('server_lifetime: an expired server is closed when idle and not reused when given back', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 2, lifetimeMs: 10_000 });
    const a = track(pool.acquire());
    const b = track(pool.acquire());
    await settle();
    const [sa, sb] = [a.server!, b.server!];
    // Jittered between 85 % and 100 % of the lifetime.
    for (const s of [sa, sb]) {
      expect(s.expiresAt - s.createdAt).toBeGreaterThanOrEqual(8_500);
      expect(s.expiresAt - s.createdAt).toBeLessThanOrEqual(10_000);
    }
    pool.release(asServer(sa), false);
    await vi.advanceTimersByTimeAsync(10_001);
    pool.tick(Date.now());
    expect(sa.closed).toBe(true);
    pool.release(asServer(sb), false); // given back after expiry
    expect(sb.closed).toBe(true);
    await settle();
    expect(pool.total).toBe(0);
  });

  it('server_check_query runs on a server idle longer than server_check_delay before a client gets it', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 1, checkQuery: 'select 1', checkDelayMs: 5000 });
    const a = track(pool.acquire());
    await settle();
    const server = a.server!;
    expect(server.ran).toEqual([]); // fresh from login: no check
    pool.release(asServer(server), false);
    await vi.advanceTimersByTimeAsync(5000);
    expect(pool.state(Date.now())).toMatchObject({ idle: 0, used: 1 });
    expect(pool.takeIdleNow()).toBeNull(); // the hot path leaves checking to acquire()
    server.internal = 'hold';
    const b = track(pool.acquire());
    await settle();
    expect(server.ran).toEqual(['select 1']);
    expect(b.server).toBeNull();
    expect(pool.state(Date.now()).tested).toBe(1);
    server.finishInternal(true);
    await settle();
    expect(b.server).toBe(server);
  });

  it('a failing check query closes the server and the client gets a new one', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 1, checkQuery: 'select 1', checkDelayMs: 1000 });
    const a = track(pool.acquire());
    await settle();
    const old = a.server!;
    pool.release(asServer(old), false);
    await vi.advanceTimersByTimeAsync(1000);
    old.internal = 'fail';
    const b = track(pool.acquire());
    await settle();
    expect(old.closed).toBe(true);
    expect(b.server).toBe(connector.opened[1]);
  });

  it('server_reset_query runs when asked; a server where it fails is closed, not pooled', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 1, resetQuery: 'DISCARD ALL' });
    const a = track(pool.acquire());
    await settle();
    const server = a.server!;
    server.statements.add('pgi_x', null);
    server.internal = 'hold';
    pool.release(asServer(server), true);
    expect(server.ran).toEqual(['DISCARD ALL']);
    expect(pool.state(Date.now())).toMatchObject({ tested: 1, idle: 0 });
    server.finishInternal(true);
    await settle();
    expect(pool.state(Date.now())).toMatchObject({ tested: 0, idle: 1 });
    expect(server.statements.size).toBe(0); // DISCARD ALL dropped them

    const b = track(pool.acquire());
    await settle();
    expect(b.server).toBe(server);
    server.internal = 'fail';
    pool.release(asServer(server), true);
    await settle();
    expect(server.closed).toBe(true);
    expect(pool.total).toBe(0);
  });

  it('a dirty server (mid-transaction, or distrusted statements) is closed when given back', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 2 });
    const a = track(pool.acquire());
    const b = track(pool.acquire());
    await settle();
    a.server!.clean = false;
    pool.release(asServer(a.server!), false);
    expect(a.server!.closed).toBe(true);
    b.server!.statements.distrust();
    pool.release(asServer(b.server!), false);
    expect(b.server!.closed).toBe(true);
  });

  it('a failed login fails every waiter when no server could serve them', async () => {
    const connector = new FakeConnector();
    connector.auto = false;
    const pool = makePool(connector, { size: 2 });
    const a = track(pool.acquire());
    const b = track(pool.acquire());
    const c = track(pool.acquire());
    expect(connector.pending).toHaveLength(2);
    connector.fail(new Error('password authentication failed'));
    await settle();
    for (const t of [a, b, c]) expect(t.error?.message).toBe('password authentication failed');
    expect(pool.state(Date.now()).waiting).toBe(0);
  });

  it('server_login_retry: after a failed login, clients fail fast until it has passed', async () => {
    const connector = new FakeConnector();
    connector.auto = false;
    const pool = makePool(connector, { size: 1, loginRetryMs: 15_000 });
    const a = track(pool.acquire());
    connector.fail(new Error('connection refused'));
    await settle();
    expect(a.error?.message).toBe('connection refused');

    const b = track(pool.acquire());
    await settle();
    expect(connector.calls).toBe(1); // no new attempt
    expect((b.error as PgError).code).toBe('08006');
    expect(b.error!.message).toMatch(/server_login_retry/);
    expect((b.error as PgError).detail).toBe('connection refused');

    await vi.advanceTimersByTimeAsync(15_000);
    connector.auto = true;
    const c = track(pool.acquire());
    await settle();
    expect(connector.calls).toBe(2);
    expect(c.server).not.toBeNull();
  });

  it('closeAll closes every server and refuses waiters, now and later', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 1 });
    const a = track(pool.acquire());
    await settle();
    const b = track(pool.acquire());
    pool.closeAll();
    await settle();
    expect(a.server!.closed).toBe(true);
    expect((b.error as PgError).code).toBe('57P01');
    const c = track(pool.acquire());
    await settle();
    expect((c.error as PgError).code).toBe('57P01');
  });
});

describe('PoolManager', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  let limits = { maxDbConnections: 0, maxUserConnections: 0 };
  const withLimits = (maxDb: number, maxUser: number): Budget => {
    limits = { maxDbConnections: maxDb, maxUserConnections: maxUser };
    return Budget.local();
  };
  const address = (dbname: string, user: string): ServerAddress => ({ ...ADDRESS, dbname, user });

  function poolOf(manager: PoolManager, connector: FakeConnector, db: string, user: string, overrides: Partial<PoolSettings> = {}): Pool {
    const pool = manager.get(db, address(db, user), settings(connector, { size: 5, ...limits, ...overrides }));
    pool.setCredentials(CREDENTIALS);
    return pool;
  }

  it('max_db_connections: a pool at the limit closes an idle server of a sibling pool to open its own', async () => {
    const connector = new FakeConnector();
    const manager = new PoolManager(log, withLimits(1, 0));
    const alice = poolOf(manager, connector, 'app', 'alice');
    const bob = poolOf(manager, connector, 'app', 'bob');
    const a = track(alice.acquire());
    await settle();
    alice.release(asServer(a.server!), false);
    const b = track(bob.acquire());
    await settle();
    expect(a.server!.closed).toBe(false); // just freed: its own clients may want it again
    await vi.advanceTimersByTimeAsync(IDLE_GRACE_MS);
    await settle();
    expect(a.server!.closed).toBe(true);
    expect(b.server).toBe(connector.opened[1]);
    expect(alice.total + bob.total).toBe(1);
  });

  it('max_user_connections: a pool waits while the sibling server is busy, and gets its turn when it is given back', async () => {
    const connector = new FakeConnector();
    const manager = new PoolManager(log, withLimits(0, 1));
    const app = poolOf(manager, connector, 'app', 'alice');
    const other = poolOf(manager, connector, 'other', 'alice');
    const a = track(app.acquire());
    await settle();
    const b = track(other.acquire());
    await settle();
    expect(b.server).toBeNull();
    expect(connector.calls).toBe(1);
    app.release(asServer(a.server!), false); // idle now: once idle IDLE_GRACE_MS, the waiting sibling evicts it
    await vi.advanceTimersByTimeAsync(IDLE_GRACE_MS);
    await settle();
    expect(a.server!.closed).toBe(true);
    expect(b.server).toBe(connector.opened[1]);
  });

  it('drops a pool unused (no client, server or waiter) for autodb_idle_timeout, and makes it anew on demand', async () => {
    const connector = new FakeConnector();
    const manager = new PoolManager(log, withLimits(0, 0));
    const pool = poolOf(manager, connector, 'app', 'alice', { unusedTimeoutMs: 60_000 });
    pool.clientJoined();
    await vi.advanceTimersByTimeAsync(120_000);
    manager.tick(Date.now());
    expect([...manager.all()]).toEqual([pool]); // a client is logged in, even with no server

    const a = track(pool.acquire());
    await settle();
    pool.clientLeft();
    await vi.advanceTimersByTimeAsync(120_000);
    manager.tick(Date.now());
    expect([...manager.all()]).toEqual([pool]); // its server is still open

    pool.discard(asServer(a.server!));
    await settle();
    await vi.advanceTimersByTimeAsync(59_000);
    manager.tick(Date.now());
    expect([...manager.all()]).toEqual([pool]);
    await vi.advanceTimersByTimeAsync(1_000);
    manager.tick(Date.now());
    expect([...manager.all()]).toEqual([]);
    await expect(pool.acquire()).rejects.toMatchObject({ code: '57P01' }); // nobody holds it: closed for good

    const again = poolOf(manager, connector, 'app', 'alice', { unusedTimeoutMs: 60_000 });
    expect(again).not.toBe(pool);
    expect([...manager.all()]).toEqual([again]);
  });

  it('keeps pools forever with autodb_idle_timeout 0', async () => {
    const connector = new FakeConnector();
    const manager = new PoolManager(log, withLimits(0, 0));
    poolOf(manager, connector, 'app', 'alice', { unusedTimeoutMs: 0 });
    await vi.advanceTimersByTimeAsync(10 * 3600_000);
    manager.tick(Date.now());
    expect([...manager.all()]).toHaveLength(1);
  });
});

// Real sockets here: the cancel goes over TCP to a stand-in for PostgreSQL's postmaster.
describe('a server being canceled', () => {
  /** Accepts cancel connections, records their bytes, and closes each only when told. */
  async function fakePostmaster(): Promise<{ port: number; received: Buffer[]; finish: () => void; close: () => Promise<void> }> {
    const sockets: net.Socket[] = [];
    const received: Buffer[] = [];
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      sockets.push(s);
      s.on('data', (d) => received.push(d));
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return {
      port: (server.address() as net.AddressInfo).port,
      received,
      finish: () => sockets.splice(0).forEach((s) => s.destroy()),
      close: () => {
        sockets.splice(0).forEach((s) => s.destroy());
        return new Promise<void>((r) => server.close(() => r()));
      },
    };
  }

  const until = async (cond: () => boolean): Promise<void> => {
    for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
    expect(cond()).toBe(true);
  };

  it('is held aside until the cancel connection closes, then goes to the next waiter', async () => {
    const postmaster = await fakePostmaster();
    try {
      const connector = new FakeConnector();
      const pool = makePool(connector, { size: 1 }, { ...ADDRESS, port: postmaster.port });
      const a = track(pool.acquire());
      await settle();
      const server = a.server!;
      const cancels = new CancelRegistry();
      const keys = cancels.register({ currentServer: () => asServer(server) });
      expect(cancels.forward(keys.processId, keys.secretKey)).toBe(true);
      expect(server.cancelsInFlight).toBe(1);
      expect(pool.state(Date.now())).toMatchObject({ cancelsOpening: 1, cancelsSent: 0 });
      await until(() => Buffer.concat(postmaster.received).length === 16);
      // CancelRequest: length 16, code 80877102, then the server's own keys.
      const sent = Buffer.concat(postmaster.received);
      expect([sent.readInt32BE(0), sent.readInt32BE(4), sent.readInt32BE(8), sent.readInt32BE(12)]).toEqual([16, 80877102, 4242, 77]);
      expect(pool.state(Date.now())).toMatchObject({ cancelsOpening: 0, cancelsSent: 1 });

      const b = track(pool.acquire());
      pool.release(asServer(server), false); // the client's query ended while the cancel is still in flight
      await settle();
      expect(b.server).toBeNull();
      expect(pool.takeIdleNow()).toBeNull();
      expect(pool.state(Date.now())).toMatchObject({ beingCanceled: 1, idle: 0, active: 0, waiting: 1 });
      expect([...pool.servers(Date.now())].map(([, state]) => state)).toEqual(['being_canceled']);
      expect(pool.total).toBe(1); // still counts against pool_size: nothing new is opened
      expect(connector.calls).toBe(1);

      postmaster.finish();
      await until(() => b.server !== null);
      expect(b.server).toBe(server);
      expect(server.cancelsInFlight).toBe(0);
      expect(pool.state(Date.now())).toMatchObject({ beingCanceled: 0, active: 1, cancelsSent: 0 });
    } finally {
      await postmaster.close();
    }
  });

  it('is closed, not pooled, when the pool closes meanwhile; a server that closes meanwhile is forgotten', async () => {
    const postmaster = await fakePostmaster();
    try {
      const connector = new FakeConnector();
      const pool = makePool(connector, { size: 2 }, { ...ADDRESS, port: postmaster.port });
      const a = track(pool.acquire());
      const b = track(pool.acquire());
      await settle();
      const cancels = new CancelRegistry();
      for (const t of [a, b]) {
        const keys = cancels.register({ currentServer: () => asServer(t.server!) });
        cancels.forward(keys.processId, keys.secretKey);
        pool.release(asServer(t.server!), false);
      }
      expect(pool.state(Date.now()).beingCanceled).toBe(2);
      b.server!.close(); // the backend died meanwhile
      await settle();
      expect(pool.state(Date.now()).beingCanceled).toBe(1);
      pool.closeAll();
      expect(a.server!.closed).toBe(true);
      await until(() => Buffer.concat(postmaster.received).length === 32);
      postmaster.finish();
      await until(() => a.server!.cancelsInFlight === 0 && b.server!.cancelsInFlight === 0);
      expect(pool.state(Date.now())).toMatchObject({ beingCanceled: 0, idle: 0 });
      expect(pool.total).toBe(0);
    } finally {
      await postmaster.close();
    }
  });

  it('a server with no cancel in flight goes back as usual; a cancel for a client without a server is not sent', async () => {
    const connector = new FakeConnector();
    const pool = makePool(connector, { size: 1 });
    const a = track(pool.acquire());
    await settle();
    const cancels = new CancelRegistry();
    const idle = cancels.register({ currentServer: () => null });
    expect(cancels.forward(idle.processId, idle.secretKey)).toBe(false);
    const busy = cancels.register({ currentServer: () => asServer(a.server!) });
    expect(cancels.forward(busy.processId, busy.secretKey + 1)).toBe(false); // wrong secret
    expect(a.server!.cancelsInFlight).toBe(0);
    pool.release(asServer(a.server!), false);
    expect(pool.state(Date.now())).toMatchObject({ idle: 1, beingCanceled: 0 });
  });
});
