// Budget with real Pools (through PoolManager) and fake servers: in-process
// (Budget.local) and as two workers sharing one BudgetHost over fake IPC
// channels that deliver each message on a later turn, in order, as JSON. The
// clock is fake: idle servers are given up only after IDLE_GRACE_MS, so tests
// move time to show both sides of it.
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Budget, IDLE_GRACE_MS } from '../../../src/budget/budget.js';
import { BudgetHost } from '../../../src/budget/host.js';
import { FAIRNESS_QUANTUM_MS, type ClientTerms } from '../../../src/budget/ledger.js';
import type { FromLedger, ToLedger } from '../../../src/budget/messages.js';
import { createLogger } from '../../../src/log/logger.js';
import { PoolManager } from '../../../src/pool/manager.js';
import type { Pool, PoolSettings } from '../../../src/pool/pool.js';
import type { ServerCredentials } from '../../../src/pool/server-login.js';
import type { ServerAddress, ServerConnection } from '../../../src/pool/server.js';

const log = createLogger('silent');
const CREDENTIALS: ServerCredentials = { kind: 'none' };

/** The fields Pool reads of a ServerConnection (as in pool.test.ts, without check/reset queries). */
class FakeServer {
  readonly createdAt = Date.now();
  lastUsedAt = Date.now();
  used = false;
  expiresAt = Infinity;
  closed = false;
  cancelsInFlight = 0;
  readonly initialParams = new Map([['is_superuser', 'off']]);
  readonly superuserMember = null;
  readonly stream = new EventEmitter();
  constructor(readonly id: number) {}
  get reusable(): boolean {
    return !this.closed;
  }
  attach(): void {}
  close(): void {
    if (this.closed) return;
    this.closed = true;
    queueMicrotask(() => this.stream.emit('close'));
  }
}

/** Opens fake servers (at once, or when `finishLogins` is called while `slow`) and keeps them all, to count the open ones. */
class FakeConnector {
  static nextId = 1;
  readonly opened: FakeServer[] = [];
  slow = false;
  private readonly loggingIn: Array<() => void> = [];
  readonly connect = (): Promise<ServerConnection> => {
    const server = new FakeServer(FakeConnector.nextId++);
    this.opened.push(server);
    if (!this.slow) return Promise.resolve(server as unknown as ServerConnection);
    return new Promise((resolve) => this.loggingIn.push(() => resolve(server as unknown as ServerConnection)));
  };
  get open(): number {
    return this.opened.filter((s) => !s.closed).length;
  }
  finishLogins(): void {
    for (const done of this.loggingIn.splice(0)) done();
  }
}

const ADDRESS: ServerAddress = { host: '127.0.0.1', port: 5432, dbname: 'app', user: 'alice' };

function settings(connector: FakeConnector, overrides: Partial<PoolSettings> = {}): PoolSettings {
  return {
    mode: 'transaction', size: 1, minSize: 0, reserveSize: 0, reserveTimeoutMs: 5000, connectTimeoutMs: 1000, loginRetryMs: 0,
    waitTimeoutMs: 0, lifetimeMs: 0, idleTimeoutMs: 0, checkQuery: '', checkDelayMs: 30_000, resetQuery: '', maxPrepared: 10,
    unusedTimeoutMs: 0, connect: connector.connect, ...overrides,
  };
}

/** Tracks what acquire() has done so far without awaiting it. */
function track(p: Promise<ServerConnection>): { server: FakeServer | null } {
  const t: { server: FakeServer | null } = { server: null };
  void p.then((s) => (t.server = s as unknown as FakeServer));
  return t;
}

const asServer = (s: FakeServer): ServerConnection => s as unknown as ServerConnection;
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** The primary and the workers' channels; `check` runs after every message delivered. */
class Network {
  readonly host = new BudgetHost((worker, msg) => this.channels.get(worker)!.toWorker(msg));
  readonly channels = new Map<number, FakeChannel>();
  inFlight = 0;
  check: () => void = () => undefined;

  deliver(fn: () => void): void {
    this.inFlight++;
    setImmediate(() => {
      this.inFlight--;
      fn();
      this.check();
    });
  }

  /** Until no message is in flight for two turns (each turn also runs the promise callbacks it caused). */
  async settle(): Promise<void> {
    let quiet = 0;
    for (let i = 0; i < 200 && quiet < 2; i++) {
      await turn();
      quiet = this.inFlight === 0 ? quiet + 1 : 0;
    }
  }
}

/** One worker's end of its IPC channel. Replies may be held back to play a slow primary. */
class FakeChannel {
  private readonly listeners: Array<(msg: unknown) => void> = [];
  private readonly heldBack: FromLedger[] = [];
  holding = false;

  constructor(private readonly worker: number, private readonly net: Network) {
    net.channels.set(worker, this);
  }

  send(msg: ToLedger): void {
    const copy = JSON.parse(JSON.stringify(msg)) as ToLedger;
    this.net.deliver(() => this.net.host.onMessage(this.worker, copy));
  }

  on(_event: 'message', listener: (msg: unknown) => void): void {
    this.listeners.push(listener);
  }

  toWorker(msg: FromLedger): void {
    if (this.holding) {
      this.heldBack.push(msg);
      return;
    }
    const copy: unknown = JSON.parse(JSON.stringify(msg));
    this.net.deliver(() => {
      for (const l of this.listeners) l(copy);
    });
  }

  letGo(): void {
    this.holding = false;
    for (const msg of this.heldBack.splice(0)) this.toWorker(msg);
  }
}

interface Worker { id: number; budget: Budget; channel: FakeChannel; connector: FakeConnector; pool: Pool }

function worker(net: Network, id: number, overrides: Partial<PoolSettings> = {}): Worker {
  const channel = new FakeChannel(id, net);
  const budget = Budget.shared(channel);
  const connector = new FakeConnector();
  const pool = new PoolManager(log, budget).get('app', ADDRESS, settings(connector, overrides));
  pool.setCredentials(CREDENTIALS);
  return { id, budget, channel, connector, pool };
}

beforeEach(() => {
  // Date for waiters' ages, the ledger's clock and idle times; setTimeout for the admission, wait and idle-sweep timers.
  // Delivery (setImmediate) stays real.
  vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout'] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('Budget.local', () => {
  async function settleLocal(): Promise<void> {
    for (let i = 0; i < 3; i++) await turn();
  }

  function twoPools(connector: FakeConnector) {
    const manager = new PoolManager(log, Budget.local());
    const pools = ['alice', 'bob'].map((user) => manager.get('app', { ...ADDRESS, user }, settings(connector, { size: 5, maxDbConnections: 1 })));
    for (const p of pools) p.setCredentials(CREDENTIALS);
    return pools as [Pool, Pool];
  }

  it('max_db_connections 1 across two pools: a server freed while the other pool waits is closed for it once idle IDLE_GRACE_MS, not before', async () => {
    const connector = new FakeConnector();
    const [alice, bob] = twoPools(connector);
    const a = track(alice.acquire());
    await settleLocal();
    const b = track(bob.acquire());
    await settleLocal();
    expect([connector.opened.length, b.server]).toEqual([1, null]);
    alice.release(asServer(a.server!), false);
    await settleLocal();
    expect([a.server!.closed, b.server]).toEqual([false, null]); // alice's next transaction may want it back
    vi.advanceTimersByTime(IDLE_GRACE_MS - 1);
    await settleLocal();
    expect([a.server!.closed, b.server]).toEqual([false, null]);
    vi.advanceTimersByTime(1); // the sweep, repeating while bob waits, finds it idle long enough
    await settleLocal();
    expect(a.server!.closed).toBe(true);
    expect(b.server).toBe(connector.opened[1]);
    expect(connector.open).toBe(1);
  });

  it('an idle server of the sibling pool, idle IDLE_GRACE_MS already, is closed as soon as a waiter needs its slot', async () => {
    const connector = new FakeConnector();
    const [alice, bob] = twoPools(connector);
    const a = track(alice.acquire());
    await settleLocal();
    alice.release(asServer(a.server!), false);
    vi.advanceTimersByTime(IDLE_GRACE_MS);
    expect(connector.open).toBe(1); // idle, kept while nobody needs it
    const b = track(bob.acquire());
    await settleLocal();
    expect(a.server!.closed).toBe(true);
    expect(b.server).toBe(connector.opened[1]);
    expect(connector.open).toBe(1);
  });
});

describe('Budget.shared: two workers, one BudgetHost', () => {
  let net: Network;
  let workers: Worker[];
  const dead = new Set<number>();
  let peak = 0;
  let poolSize = 1;

  /** A fresh primary and two workers whose pools have `overrides`. */
  function start(overrides: Partial<PoolSettings> = {}): void {
    net?.host.close();
    net = new Network();
    poolSize = overrides.size ?? 1;
    workers = [worker(net, 1, overrides), worker(net, 2, overrides)];
    // Every message delivered: never more servers of the pool open (or opening) than its size, in both workers together.
    net.check = () => {
      const open = workers.filter((w) => !dead.has(w.id)).reduce((n, w) => n + w.connector.open, 0);
      peak = Math.max(peak, open);
    };
  }

  beforeEach(() => {
    dead.clear();
    peak = 0;
    start();
  });
  afterEach(() => {
    net.host.close();
    expect(peak).toBeLessThanOrEqual(poolSize);
  });

  /** What the host's own timer does every 250 ms, after the quantum a waiter must wait for an indivisible slot. */
  async function quantumPasses(): Promise<void> {
    vi.setSystemTime(Date.now() + FAIRNESS_QUANTUM_MS);
    net.host.ledger.tick();
    await net.settle();
  }

  it('B waits while A holds the only slot; A, under pressure once B waited a quantum, closes the server when it releases it and B opens one', async () => {
    const [a, b] = workers as [Worker, Worker];
    const fromA = track(a.pool.acquire());
    await net.settle();
    expect(fromA.server).not.toBeNull();
    const fromB = track(b.pool.acquire());
    await net.settle();
    expect([b.connector.opened.length, net.host.ledger.queued]).toEqual([0, 1]);
    await quantumPasses(); // A is told to give one up; its server is busy, so it goes when released
    expect([fromA.server!.closed, b.connector.opened.length]).toEqual([false, 0]);
    a.pool.release(asServer(fromA.server!), false);
    await net.settle();
    expect(fromA.server!.closed).toBe(true);
    expect(fromB.server).toBe(b.connector.opened[0]);
    expect(net.host.ledger.poolTotal(a.pool.key)).toBe(1);
    expect(peak).toBe(1); // and checked after every message, for every test, in afterEach
  });

  it('an idle server is kept IDLE_GRACE_MS (no hand-over between two transactions), then closed for the other worker; and back the same way', async () => {
    const [a, b] = workers as [Worker, Worker];
    const fromA = track(a.pool.acquire());
    await net.settle();
    a.pool.release(asServer(fromA.server!), false);
    const fromB = track(b.pool.acquire());
    await net.settle();
    expect([fromA.server!.closed, fromB.server]).toEqual([false, null]);
    vi.advanceTimersByTime(IDLE_GRACE_MS - 1);
    await net.settle();
    expect([fromA.server!.closed, fromB.server]).toEqual([false, null]);
    vi.advanceTimersByTime(1);
    await net.settle();
    expect(fromA.server!.closed).toBe(true);
    expect(fromB.server).toBe(b.connector.opened[0]);

    const again = track(a.pool.acquire()); // and back
    await net.settle();
    b.pool.release(asServer(fromB.server!), false); // B was told of A's waiter, but holds no more than its share: kept for now
    await net.settle();
    expect(fromB.server!.closed).toBe(false);
    vi.advanceTimersByTime(IDLE_GRACE_MS - 1);
    await net.settle();
    expect([fromB.server!.closed, again.server]).toEqual([false, null]);
    vi.advanceTimersByTime(1);
    await net.settle();
    expect(fromB.server!.closed).toBe(true);
    expect(again.server).toBe(a.connector.opened[1]);
    expect(net.host.ledger.poolTotal(a.pool.key)).toBe(1);
  });

  it('a worker beyond its share yields a used server even to serve a waiter of its own; a new server serves its waiter first even under that pressure (no ping-pong)', async () => {
    const [a, b] = workers as [Worker, Worker];
    const a1 = track(a.pool.acquire());
    await net.settle();
    const fromB = track(b.pool.acquire());
    await net.settle();
    const a2 = track(a.pool.acquire()); // waits in A, behind B's older waiter
    await net.settle();
    await quantumPasses(); // B's waiter has waited its turn: A holds one beyond its share (count 1)
    b.connector.slow = true;
    a.pool.release(asServer(a1.server!), false);
    await net.settle();
    // A yielded; the slot went to B, and by now A's waiter has waited a quantum too: B is told it holds one beyond its share.
    expect(a1.server!.closed).toBe(true);
    expect([b.connector.opened.length, fromB.server, a2.server]).toEqual([1, null, null]);
    b.connector.finishLogins(); // B's new server is ready only after that pressure arrived
    await net.settle();
    expect(fromB.server).toBe(b.connector.opened[0]);
    expect(fromB.server!.closed).toBe(false);
    expect(a2.server).toBeNull();
    b.pool.release(asServer(fromB.server!), false); // used once: now it goes
    await net.settle();
    expect(fromB.server!.closed).toBe(true);
    expect(a2.server).toBe(a.connector.opened[1]);
    expect(net.host.ledger.poolTotal(a.pool.key)).toBe(1);
  });

  it('an ask whose waiter left stays queued until the pool tick withdraws it, and then no longer presses the holder', async () => {
    start({ waitTimeoutMs: 1000 });
    const [a, b] = workers as [Worker, Worker];
    const fromA = track(a.pool.acquire());
    await net.settle();
    const outcome = b.pool.acquire().then(() => 'served', (err: Error) => err.message);
    await net.settle();
    expect(net.host.ledger.queued).toBe(1);
    vi.advanceTimersByTime(1000);
    await expect(outcome).resolves.toMatch(/query_wait_timeout/);
    await net.settle();
    expect(net.host.ledger.queued).toBe(1); // not withdrawn the moment no waiter is left: that is IPC per transaction under contention
    b.pool.tick(Date.now());
    await net.settle();
    expect(net.host.ledger.queued).toBe(0);
    a.pool.release(asServer(fromA.server!), false);
    vi.advanceTimersByTime(2 * IDLE_GRACE_MS);
    await net.settle();
    expect(fromA.server!.closed).toBe(false); // nobody waits elsewhere: kept
  });

  it('a waiter served by a server freed in its own worker leaves its ask queued until the pool tick (no withdraw and ask again per transaction)', async () => {
    start({ size: 2 });
    const [a, b] = workers as [Worker, Worker];
    const a1 = track(a.pool.acquire());
    await net.settle();
    track(b.pool.acquire());
    await net.settle();
    const a2 = track(a.pool.acquire()); // the pool is full: A asks, queued
    await net.settle();
    expect(net.host.ledger.queued).toBe(1);
    a.pool.release(asServer(a1.server!), false);
    await net.settle();
    expect(a2.server).toBe(a1.server);
    expect(net.host.ledger.queued).toBe(1);
    a.pool.tick(Date.now());
    await net.settle();
    expect(net.host.ledger.queued).toBe(0);
  });

  it('a dead worker frees its slots at once: the other worker waiting gets a server', async () => {
    const [a, b] = workers as [Worker, Worker];
    track(a.pool.acquire());
    await net.settle();
    const fromB = track(b.pool.acquire());
    await net.settle();
    expect(fromB.server).toBeNull();
    dead.add(a.id); // its sockets die with it
    net.host.workerGone(a.id);
    await net.settle();
    expect(fromB.server).toBe(b.connector.opened[0]);
    expect(net.host.ledger.poolTotal(b.pool.key)).toBe(1);
  });

  const client: ClientTerms = { database: 'app', user: 'alice', maxClientConn: 1, maxDbClientConnections: 0, maxUserClientConnections: 0 };

  it('admitClient answers over the channel: null when admitted, the limit when full, and a client that left frees its slot', async () => {
    const [a, b] = workers as [Worker, Worker];
    await expect(a.budget.admitClient(client)).resolves.toBeNull();
    await expect(b.budget.admitClient(client)).resolves.toBe('max_client_conn');
    a.budget.clientLeft('app', 'alice');
    await net.settle();
    await expect(b.budget.admitClient(client)).resolves.toBeNull();
    expect(net.host.ledger.clientCount).toBe(1);
  });

  it('an admission that arrives after the worker gave up waiting is given back', async () => {
    const [a, b] = workers as [Worker, Worker];
    a.channel.holding = true; // the primary answers, but the answer is late
    const answer = a.budget.admitClient({ ...client, database: 'other', user: 'bob' });
    await net.settle();
    expect(net.host.ledger.clientCount).toBe(1);
    vi.advanceTimersByTime(5_000);
    await expect(answer).resolves.toBe('max_client_conn'); // refused as full rather than admitted beyond the limit
    a.channel.letGo();
    await net.settle();
    expect(net.host.ledger.clientCount).toBe(0);
    await expect(b.budget.admitClient(client)).resolves.toBeNull();
  });
});
