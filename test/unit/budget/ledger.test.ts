// The Ledger on its own (no IPC): demand asks queued in `since` order across
// workers, the reserve after reserve_pool_timeout, max_db/max_user_connections,
// pressure on the holders, fill asks, withdraw, dead workers, client slots,
// when effects are delivered, and a property test against a model of grants.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FAIRNESS_QUANTUM_MS, Ledger, type ClientTerms, type PoolId, type PoolTerms, type Pressure, type SlotKind } from '../../../src/budget/ledger.js';

type Effect =
  | { op: 'granted'; worker: number; pool: string; kind: SlotKind; count: number }
  | { op: 'denied'; worker: number; pool: string; count: number }
  | { op: 'pressure'; worker: number; pressures: Pressure[] };

const poolId = (database: string, user: string): PoolId => ({ key: `${database}\0${user}`, database, user });
const APP_ALICE = poolId('app', 'alice');
const APP_BOB = poolId('app', 'bob');
const OTHER_ALICE = poolId('other', 'alice');

const terms = (overrides: Partial<PoolTerms> = {}): PoolTerms => ({ size: 2, reserveSize: 0, reserveTimeoutMs: 5000, minSize: 0, maxDbConnections: 0, maxUserConnections: 0, ...overrides });

/** A ledger whose effects are recorded (and may be answered by `react`), on a clock the test moves. */
function recorded(react: (e: Effect, ledger: Ledger) => void = () => undefined) {
  const clock = { now: 0 };
  const log: Effect[] = [];
  const ledger: Ledger = new Ledger(
    {
      granted: (worker, pool, kind, count) => deliver({ op: 'granted', worker, pool, kind, count }),
      denied: (worker, pool, count) => deliver({ op: 'denied', worker, pool, count }),
      pressure: (worker, pressures) => deliver({ op: 'pressure', worker, pressures }),
    },
    () => clock.now,
  );
  function deliver(e: Effect): void {
    log.push(e);
    react(e, ledger);
  }
  const granted = (worker: number, pool: PoolId): number => log.reduce((n, e) => (e.op === 'granted' && e.worker === worker && e.pool === pool.key ? n + e.count : n), 0);
  const pressures = (worker: number): Pressure[][] => log.flatMap((e) => (e.op === 'pressure' && e.worker === worker ? [e.pressures] : []));
  return { ledger, log, clock, granted, pressures };
}

describe('Ledger: server slots', () => {
  it('grants demand up to the pool size across workers and then serves the oldest waiter first, whoever asked first', () => {
    const { ledger, granted } = recorded();
    ledger.ask(1, APP_ALICE, terms(), 'demand', 1, 100);
    ledger.ask(2, APP_ALICE, terms(), 'demand', 2, 110);
    expect([granted(1, APP_ALICE), granted(2, APP_ALICE)]).toEqual([1, 1]);
    expect(ledger.poolTotal(APP_ALICE.key)).toBe(2);
    expect(ledger.queued).toBe(1);
    // Worker 1 asks later, for a waiter older than worker 2's queued one.
    ledger.ask(1, APP_ALICE, terms(), 'demand', 1, 105);
    expect(ledger.poolTotal(APP_ALICE.key)).toBe(2);
    ledger.release(2, APP_ALICE.key, 1);
    expect([granted(1, APP_ALICE), granted(2, APP_ALICE)]).toEqual([2, 1]);
    ledger.release(1, APP_ALICE.key, 1);
    expect([granted(1, APP_ALICE), granted(2, APP_ALICE)]).toEqual([2, 2]);
    expect(ledger.poolTotal(APP_ALICE.key)).toBe(2);
    expect(ledger.queued).toBe(0);
  });

  it('a release of slots a worker does not hold frees nothing', () => {
    const { ledger, granted } = recorded();
    ledger.ask(1, APP_ALICE, terms({ size: 1 }), 'demand', 1, 0);
    ledger.ask(2, APP_ALICE, terms({ size: 1 }), 'demand', 1, 0);
    ledger.release(2, APP_ALICE.key, 1); // queued, never granted
    ledger.release(3, APP_ALICE.key, 5);
    expect(ledger.poolTotal(APP_ALICE.key)).toBe(1);
    expect(granted(2, APP_ALICE)).toBe(0);
  });

  it('reserve: an ask queued for reserve_pool_timeout is granted from the reserve on tick, never beyond size + reserve', () => {
    const { ledger, clock, granted } = recorded();
    const t = terms({ size: 1, reserveSize: 1, reserveTimeoutMs: 1000 });
    ledger.ask(1, APP_ALICE, t, 'demand', 1, 0);
    ledger.ask(2, APP_ALICE, t, 'demand', 1, 0);
    clock.now = 999;
    ledger.tick();
    expect(granted(2, APP_ALICE)).toBe(0);
    clock.now = 1000;
    ledger.tick();
    expect(granted(2, APP_ALICE)).toBe(1);
    expect(ledger.poolTotal(APP_ALICE.key)).toBe(2);
    ledger.ask(3, APP_ALICE, t, 'demand', 1, 0); // as old as the reserve wants, but it is spent
    clock.now = 5000;
    ledger.tick();
    expect(granted(3, APP_ALICE)).toBe(0);
    expect(ledger.poolTotal(APP_ALICE.key)).toBe(2);
    expect(ledger.queued).toBe(1);
  });

  it('max_db_connections holds across the pools (users) of one database and across workers', () => {
    const { ledger, granted } = recorded();
    const t = terms({ size: 5, maxDbConnections: 2 });
    ledger.ask(1, APP_ALICE, t, 'demand', 1, 0);
    ledger.ask(2, APP_BOB, t, 'demand', 1, 0);
    ledger.ask(1, APP_BOB, t, 'demand', 1, 1);
    ledger.ask(3, OTHER_ALICE, t, 'demand', 1, 2); // another database: not held to app's limit
    expect([granted(1, APP_BOB), granted(3, OTHER_ALICE)]).toEqual([0, 1]);
    expect(ledger.poolTotal(APP_ALICE.key) + ledger.poolTotal(APP_BOB.key)).toBe(2);
    ledger.release(1, APP_ALICE.key, 1);
    expect(granted(1, APP_BOB)).toBe(1);
    expect(ledger.poolTotal(APP_ALICE.key) + ledger.poolTotal(APP_BOB.key)).toBe(2);
  });

  it('max_user_connections holds across the databases of one user', () => {
    const { ledger, granted } = recorded();
    const t = terms({ size: 5, maxUserConnections: 1 });
    ledger.ask(1, APP_ALICE, t, 'demand', 1, 0);
    ledger.ask(2, OTHER_ALICE, t, 'demand', 1, 1);
    ledger.ask(2, APP_BOB, t, 'demand', 1, 2); // bob has room
    expect([granted(2, OTHER_ALICE), granted(2, APP_BOB)]).toEqual([0, 1]);
    ledger.release(1, APP_ALICE.key, 1);
    expect(granted(2, OTHER_ALICE)).toBe(1);
  });

  it('fill asks are granted up to min(min_pool_size, size) across workers, the rest denied, never queued', () => {
    const { ledger, log, granted } = recorded();
    const t = terms({ size: 3, minSize: 2 });
    ledger.ask(1, APP_ALICE, t, 'fill', 1, 0);
    ledger.ask(2, APP_ALICE, t, 'fill', 3, 0);
    expect(log).toEqual([
      { op: 'granted', worker: 1, pool: APP_ALICE.key, kind: 'fill', count: 1 },
      { op: 'granted', worker: 2, pool: APP_ALICE.key, kind: 'fill', count: 1 },
      { op: 'denied', worker: 2, pool: APP_ALICE.key, count: 2 },
    ]);
    expect(ledger.queued).toBe(0);
    ledger.ask(3, APP_BOB, terms({ size: 2, minSize: 5 }), 'fill', 5, 0);
    expect(granted(3, APP_BOB)).toBe(2);
    ledger.ask(3, OTHER_ALICE, terms({ minSize: 2, maxUserConnections: 1 }), 'fill', 2, 0);
    expect(log.at(-1)).toEqual({ op: 'denied', worker: 3, pool: OTHER_ALICE.key, count: 2 }); // alice's slots are all app's
  });

  it('withdraw removes the newest asks of that worker and pool only', () => {
    const { ledger, granted } = recorded();
    const t = terms({ size: 1 });
    ledger.ask(3, APP_ALICE, t, 'demand', 1, 0);
    ledger.ask(3, APP_BOB, t, 'demand', 1, 0);
    ledger.ask(1, APP_ALICE, t, 'demand', 1, 100);
    ledger.ask(2, APP_ALICE, t, 'demand', 1, 150);
    ledger.ask(1, APP_ALICE, t, 'demand', 1, 200);
    ledger.ask(1, APP_BOB, t, 'demand', 1, 50);
    ledger.withdraw(1, APP_ALICE.key, 1);
    expect(ledger.queued).toBe(3);
    ledger.release(3, APP_ALICE.key, 1);
    expect([granted(1, APP_ALICE), granted(2, APP_ALICE)]).toEqual([1, 0]); // its 100 ask stayed
    ledger.release(1, APP_ALICE.key, 1);
    expect(granted(2, APP_ALICE)).toBe(1);
    ledger.withdraw(2, APP_BOB.key, 5); // none of worker 2's
    ledger.withdraw(1, APP_ALICE.key, 5); // none left for this pool
    expect(ledger.queued).toBe(1);
    ledger.release(3, APP_BOB.key, 1);
    expect(granted(1, APP_BOB)).toBe(1);
  });

  it('a dead worker frees its slots and clients at once; its queued asks go and the others are granted', () => {
    const { ledger, granted, pressures } = recorded();
    const t = terms({ size: 2 });
    ledger.ask(1, APP_ALICE, t, 'demand', 3, 0); // 2 granted, 1 queued
    ledger.ask(2, APP_ALICE, t, 'demand', 2, 10);
    const client: ClientTerms = { database: 'app', user: 'alice', maxClientConn: 10, maxDbClientConnections: 0, maxUserClientConnections: 0 };
    ledger.admit(1, client);
    ledger.admit(1, client);
    ledger.admit(2, client);
    const sentToOne = pressures(1).length;
    ledger.workerGone(1);
    expect(granted(2, APP_ALICE)).toBe(2);
    expect(ledger.poolTotal(APP_ALICE.key)).toBe(2);
    expect(ledger.queued).toBe(0); // worker 1's own queued ask went with it
    expect(ledger.clientCount).toBe(1);
    expect(pressures(1).length).toBe(sentToOne); // nothing is said to the dead
  });
});

describe('Ledger: pressure', () => {
  const P = `p:${APP_ALICE.key}`;

  it('a full pool wanted evenly: the holder is told to give up what it holds beyond its share (count) and, when idle, one per ask of another worker (idle); the asker is not', () => {
    const { ledger, pressures } = recorded();
    ledger.ask(1, APP_ALICE, terms(), 'demand', 2, 0);
    ledger.ask(2, APP_ALICE, terms(), 'demand', 2, 0);
    expect(pressures(1)).toEqual([[{ scope: P, count: 1, idle: 2 }]]); // 2 slots, 2 workers wanting 2 each: one each
    expect(pressures(2)).toEqual([]);
    ledger.release(1, APP_ALICE.key, 1);
    expect(pressures(1).at(-1)).toEqual([{ scope: P, count: 0, idle: 1 }]); // at its share: only an idle one goes
    expect(pressures(2)).toEqual([]); // holds one now, but nobody else asks
    ledger.release(1, APP_ALICE.key, 1);
    expect([pressures(1).at(-1), ledger.queued, pressures(2)]).toEqual([[], 0, []]);
  });

  it('every holder of a full pool gets idle pressure for the asks of the other workers; only the one beyond its share gets count > 0', () => {
    const { ledger, pressures } = recorded();
    const t = terms({ size: 4 });
    ledger.ask(1, APP_ALICE, t, 'demand', 3, 0);
    ledger.ask(2, APP_ALICE, t, 'demand', 2, 0); // 1 granted, 1 queued
    ledger.ask(3, APP_ALICE, t, 'demand', 2, 0); // both queued
    // Wanted 3 + 2 + 2 of 4 slots: shares 2, 1, 1.
    expect(pressures(1).at(-1)).toEqual([{ scope: P, count: 1, idle: 3 }]);
    expect(pressures(2).at(-1)).toEqual([{ scope: P, count: 0, idle: 2 }]); // its own ask is not counted
    expect(pressures(3)).toEqual([]); // holds nothing
  });

  it('an odd slot stays with its holder until the other worker has waited FAIRNESS_QUANTUM_MS; pressure is resent only when count or idle changes and cleared when the queue empties', () => {
    const { ledger, clock, pressures } = recorded();
    ledger.ask(1, APP_ALICE, terms(), 'demand', 2, 0);
    ledger.ask(2, APP_ALICE, terms(), 'demand', 1, 0);
    expect(pressures(1)).toEqual([[{ scope: P, count: 0, idle: 1 }]]); // shares 1.33 and 0.67: no hand-over per transaction
    clock.now = FAIRNESS_QUANTUM_MS - 1;
    ledger.tick();
    expect(pressures(1)).toHaveLength(1);
    clock.now = FAIRNESS_QUANTUM_MS;
    ledger.tick();
    expect(pressures(1).at(-1)).toEqual([{ scope: P, count: 1, idle: 1 }]);
    ledger.ask(3, APP_ALICE, terms(), 'demand', 1, FAIRNESS_QUANTUM_MS);
    expect(pressures(1).at(-1)).toEqual([{ scope: P, count: 1, idle: 2 }]); // still one over its share, one more asker
    ledger.tick();
    expect(pressures(1)).toHaveLength(3); // nothing changed: not resent
    expect([pressures(2), pressures(3)]).toEqual([[], []]); // they hold nothing
    ledger.withdraw(3, APP_ALICE.key, 1);
    expect(pressures(1).at(-1)).toEqual([{ scope: P, count: 1, idle: 1 }]);
    ledger.withdraw(2, APP_ALICE.key, 1);
    expect(ledger.queued).toBe(0);
    expect(pressures(1).at(-1)).toEqual([]);
    ledger.release(1, APP_ALICE.key, 1);
    expect(pressures(1)).toHaveLength(5); // no pressure before, none now: a release by it sends nothing
  });

  it('is resent after any release by a worker under pressure, even unchanged (the worker may have used some up yielding)', () => {
    const { ledger, pressures } = recorded();
    ledger.ask(1, APP_BOB, terms(), 'demand', 1, 0);
    ledger.ask(1, APP_ALICE, terms(), 'demand', 2, 0);
    ledger.ask(2, APP_ALICE, terms(), 'demand', 2, 0);
    const told = [{ scope: P, count: 1, idle: 2 }];
    expect(pressures(1)).toEqual([told]);
    ledger.tick();
    ledger.ask(3, APP_BOB, terms(), 'demand', 1, 0); // a change that leaves worker 1's pressure as it is
    expect(pressures(1)).toEqual([told]);
    ledger.release(1, APP_BOB.key, 1); // not the pressed pool, and nothing about alice changed
    expect(pressures(1)).toEqual([told, told]);
    ledger.release(3, APP_BOB.key, 1); // worker 3 is under no pressure: told nothing
    expect([pressures(1), pressures(3)]).toEqual([[told, told], []]);
  });

  it('for max_db_connections puts d:<db> on the holders of any pool of that database, the asker too', () => {
    const { ledger, pressures } = recorded();
    const t = terms({ size: 5, maxDbConnections: 2 });
    ledger.ask(1, APP_ALICE, t, 'demand', 1, 0);
    ledger.ask(2, APP_BOB, t, 'demand', 1, 0);
    ledger.ask(3, OTHER_ALICE, t, 'demand', 1, 0);
    ledger.ask(2, APP_BOB, t, 'demand', 1, 300);
    expect(pressures(1)).toEqual([[{ scope: 'd:app', count: 1 }]]);
    expect(pressures(2)).toEqual([[{ scope: 'd:app', count: 1 }]]); // its alice sibling could be idle
    expect(pressures(3)).toEqual([]);
    ledger.release(1, APP_ALICE.key, 1);
    expect([pressures(1).at(-1), pressures(2).at(-1)]).toEqual([[], []]);
  });
});

describe('Ledger: client slots', () => {
  const client = (database: string, user: string, limits: Partial<ClientTerms> = {}): ClientTerms => ({ database, user, maxClientConn: 100, maxDbClientConnections: 0, maxUserClientConnections: 0, ...limits });

  it('refuses at max_client_conn across workers, and admits again once one left', () => {
    const { ledger } = recorded();
    const c = client('app', 'alice', { maxClientConn: 2 });
    expect([ledger.admit(1, c), ledger.admit(2, c), ledger.admit(1, c)]).toEqual([null, null, 'max_client_conn']);
    ledger.clientLeft(2, 'app', 'alice');
    expect(ledger.admit(1, c)).toBeNull();
    expect(ledger.clientCount).toBe(2);
  });

  it('refuses per database (max_db_client_connections) and per user (max_user_client_connections)', () => {
    const { ledger } = recorded();
    const perDb = (db: string, user: string): ClientTerms => client(db, user, { maxDbClientConnections: 1 });
    expect(ledger.admit(1, perDb('app', 'alice'))).toBeNull();
    expect(ledger.admit(2, perDb('app', 'bob'))).toBe('max_db_client_connections');
    expect(ledger.admit(2, perDb('other', 'bob'))).toBeNull();
    const perUser = (db: string): ClientTerms => client(db, 'carol', { maxUserClientConnections: 1 });
    expect(ledger.admit(1, perUser('third'))).toBeNull();
    expect(ledger.admit(2, perUser('fourth'))).toBe('max_user_client_connections');
    ledger.clientLeft(1, 'third', 'carol');
    expect(ledger.admit(2, perUser('fourth'))).toBeNull();
  });

  it('ignores a clientLeft of a worker that holds no such client, so counts never go negative', () => {
    const { ledger } = recorded();
    const c = client('app', 'alice', { maxClientConn: 1 });
    ledger.admit(1, c);
    ledger.clientLeft(2, 'app', 'alice'); // another worker's
    ledger.clientLeft(1, 'app', 'bob'); // another user's
    expect(ledger.clientCount).toBe(1);
    ledger.clientLeft(1, 'app', 'alice');
    ledger.clientLeft(1, 'app', 'alice');
    expect(ledger.clientCount).toBe(0);
    expect([ledger.admit(2, c), ledger.admit(2, c)]).toEqual([null, 'max_client_conn']);
  });

  it('a dead worker frees its clients, per database and user too', () => {
    const { ledger } = recorded();
    const c = client('app', 'alice', { maxClientConn: 3, maxDbClientConnections: 2 });
    ledger.admit(1, c);
    ledger.admit(1, c);
    expect(ledger.admit(2, c)).toBe('max_db_client_connections');
    ledger.workerGone(1);
    expect([ledger.admit(2, c), ledger.admit(2, c), ledger.clientCount]).toEqual([null, null, 2]);
  });
});

describe('Ledger: effects', () => {
  it('are delivered once the change is complete, not where they arose', () => {
    const seen: Array<{ total: number; queued: number }> = [];
    const { ledger, clock } = recorded((e, l) => {
      if (e.op === 'granted' && e.kind === 'fill') seen.push({ total: l.poolTotal(APP_BOB.key), queued: l.queued });
    });
    const reserved = terms({ size: 1, reserveSize: 1, reserveTimeoutMs: 1000 });
    ledger.ask(1, APP_BOB, reserved, 'demand', 1, 0);
    ledger.ask(2, APP_BOB, reserved, 'demand', 1, 0);
    clock.now = 1000; // bob's waiter may reach into the reserve at the next change
    // The fill grant arises first in this change; the reserve grant after it, in the same change.
    ledger.ask(3, APP_ALICE, terms({ minSize: 1 }), 'fill', 1, 1000);
    expect(seen).toEqual([{ total: 2, queued: 0 }]);
  });

  it('may call back into the ledger: a worker closing its server the moment it is told it holds one beyond its share', () => {
    const { ledger, log, clock } = recorded((e, l) => {
      if (e.op === 'pressure' && e.pressures.some((p) => p.count > 0)) l.release(e.worker, APP_ALICE.key, 1);
    });
    ledger.ask(1, APP_ALICE, terms({ size: 1 }), 'demand', 1, 0);
    ledger.ask(2, APP_ALICE, terms({ size: 1 }), 'demand', 1, 10);
    clock.now = 10 + FAIRNESS_QUANTUM_MS; // worker 2 has waited its turn
    ledger.tick();
    const P = `p:${APP_ALICE.key}`;
    expect(log).toEqual([
      { op: 'granted', worker: 1, pool: APP_ALICE.key, kind: 'demand', count: 1 },
      { op: 'pressure', worker: 1, pressures: [{ scope: P, count: 0, idle: 1 }] },
      { op: 'pressure', worker: 1, pressures: [{ scope: P, count: 1, idle: 1 }] },
      { op: 'granted', worker: 2, pool: APP_ALICE.key, kind: 'demand', count: 1 },
      { op: 'pressure', worker: 1, pressures: [] },
    ]);
    expect([ledger.poolTotal(APP_ALICE.key), ledger.queued]).toEqual([1, 0]);
  });
});

// Random ask/withdraw/release/workerGone/tick across 3 workers and 2 pools of one
// database, checked after every step against a model built from the effects alone.
describe('Ledger: property', () => {
  const POOLS = [APP_ALICE, APP_BOB];
  const TERMS = terms({ size: 2, reserveSize: 1, reserveTimeoutMs: 100, minSize: 1, maxDbConnections: 3 });
  const WORKERS = [1, 2, 3];
  type Step =
    | { op: 'ask'; worker: number; pool: number; kind: SlotKind; count: number; age: number }
    | { op: 'withdraw'; worker: number; pool: number; count: number }
    | { op: 'release'; worker: number; pool: number; count: number }
    | { op: 'gone'; worker: number }
    | { op: 'tick'; ms: number };
  const worker = fc.constantFrom(...WORKERS);
  const pool = fc.constantFrom(0, 1);
  const count = fc.integer({ min: 1, max: 3 });
  const step: fc.Arbitrary<Step> = fc.oneof(
    fc.record({ op: fc.constant('ask' as const), worker, pool, kind: fc.constantFrom<SlotKind>('demand', 'demand', 'fill'), count, age: fc.integer({ min: 0, max: 200 }) }),
    fc.record({ op: fc.constant('withdraw' as const), worker, pool, count }),
    fc.record({ op: fc.constant('release' as const), worker, pool, count }),
    fc.record({ op: fc.constant('gone' as const), worker }),
    fc.record({ op: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 150 }) }),
  );

  it('never exceeds a limit, agrees with the grants it sent, grants FIFO, queues nothing that fits, and presses every holder of a full pool, beyond its share only by the excess', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        interface Queued { worker: number; pool: number; since: number; seq: number }
        const held = new Map<string, number>(); // `${worker}/${pool}`
        const heldBy = (w: number, p: number): number => held.get(`${w}/${p}`) ?? 0;
        const total = (p: number): number => WORKERS.reduce((n, w) => n + heldBy(w, p), 0);
        let queue: Queued[] = []; // in the ledger's order: by since, then arrival
        let seq = 0;
        const lastPressure = new Map<number, Pressure[]>();
        let effects: Effect[] = [];
        const { ledger, clock } = recorded((e) => effects.push(e));
        clock.now = 1000;

        for (const s of steps) {
          effects = [];
          const before = POOLS.map((_, p) => total(p));
          if (s.op === 'ask') {
            const since = clock.now - s.age;
            ledger.ask(s.worker, POOLS[s.pool]!, TERMS, s.kind, s.count, since);
            if (s.kind === 'demand') for (let i = 0; i < s.count; i++) queue.push({ worker: s.worker, pool: s.pool, since, seq: seq++ });
          } else if (s.op === 'withdraw') {
            ledger.withdraw(s.worker, POOLS[s.pool]!.key, s.count);
            const mine = queue.filter((q) => q.worker === s.worker && q.pool === s.pool).slice(-s.count);
            queue = queue.filter((q) => !mine.includes(q));
          } else if (s.op === 'release') {
            ledger.release(s.worker, POOLS[s.pool]!.key, s.count);
            held.set(`${s.worker}/${s.pool}`, heldBy(s.worker, s.pool) - Math.min(s.count, heldBy(s.worker, s.pool)));
          } else if (s.op === 'gone') {
            ledger.workerGone(s.worker);
            for (let p = 0; p < POOLS.length; p++) held.delete(`${s.worker}/${p}`);
            queue = queue.filter((q) => q.worker !== s.worker);
            lastPressure.delete(s.worker);
          } else if (s.op === 'tick') {
            clock.now += s.ms;
            ledger.tick();
          }
          queue.sort((a, b) => a.since - b.since || a.seq - b.seq);

          // Sent when scope, count or idle changed, and after every release by a worker under pressure.
          const told = (w: number): string => JSON.stringify((lastPressure.get(w) ?? []).map((x) => [x.scope, x.count, x.idle]));
          if (s.op === 'release' && told(s.worker) !== '[]') expect(effects.some((e) => e.op === 'pressure' && e.worker === s.worker)).toBe(true);
          const grantedNow: Queued[] = [];
          for (const e of effects) {
            if (e.op === 'pressure') {
              expect(e.worker === (s.op === 'gone' ? s.worker : -1)).toBe(false); // nothing to the dead
              const text = JSON.stringify(e.pressures.map((x) => [x.scope, x.count, x.idle]));
              if (!(s.op === 'release' && e.worker === s.worker)) expect(text).not.toBe(told(e.worker));
              lastPressure.set(e.worker, e.pressures);
              continue;
            }
            if (e.op !== 'granted') continue;
            const p = POOLS.findIndex((id) => id.key === e.pool);
            held.set(`${e.worker}/${p}`, heldBy(e.worker, p) + e.count);
            if (e.kind === 'fill') {
              expect(s.op === 'ask' && s.kind === 'fill').toBe(true);
              expect(e.count).toBeLessThanOrEqual(Math.max(0, Math.min(TERMS.minSize, TERMS.size) - before[p]!));
              continue;
            }
            // A worker's grants for a pool are its oldest asks there.
            const mine = queue.filter((q) => q.worker === e.worker && q.pool === p).slice(0, e.count);
            expect(mine).toHaveLength(e.count);
            grantedNow.push(...mine);
            queue = queue.filter((q) => !mine.includes(q));
          }

          const dbTotal = total(0) + total(1);
          const reserveFor = (q: Queued): number => (clock.now - q.since >= TERMS.reserveTimeoutMs ? TERMS.reserveSize : 0);
          for (let p = 0; p < POOLS.length; p++) {
            expect(ledger.poolTotal(POOLS[p]!.key)).toBe(total(p));
            expect(total(p)).toBeLessThanOrEqual(TERMS.size + TERMS.reserveSize);
          }
          expect(dbTotal).toBeLessThanOrEqual(TERMS.maxDbConnections);
          expect(ledger.queued).toBe(queue.length);
          for (const q of queue) {
            const poolFull = total(q.pool) >= TERMS.size + reserveFor(q);
            expect(poolFull || dbTotal >= TERMS.maxDbConnections).toBe(true);
          }
          for (const g of grantedNow) expect(queue.some((q) => q.pool === g.pool && q.since < g.since)).toBe(false);

          // Pressure as last told: d:app exactly as the queue calls for (scope and count; `since` is
          // not resent alone); p:<key> on every holder of a full pool another worker waits for, with
          // idle = those asks and count = what it holds beyond a share in proportion to what it wants
          // (rounded down, or up by one for an odd slot); none at all once nothing waits.
          const expectedDb = new Map<number, number>();
          for (let p = 0; p < POOLS.length; p++) {
            const asks = queue.filter((q) => q.pool === p);
            if (asks.length === 0 || total(p) >= TERMS.size + reserveFor(asks[0]!)) continue;
            for (const w of WORKERS) if (heldBy(w, 0) + heldBy(w, 1) > 0) expectedDb.set(w, (expectedDb.get(w) ?? 0) + asks.length);
          }
          for (const w of WORKERS) {
            const told = lastPressure.get(w) ?? [];
            expect(told.filter((x) => x.scope === 'd:app').map((x) => x.count)).toEqual(expectedDb.has(w) ? [expectedDb.get(w)] : []);
            expect(told.every((x) => x.scope === 'd:app' || POOLS.some((id) => x.scope === `p:${id.key}`))).toBe(true);
            for (let p = 0; p < POOLS.length; p++) {
              const entry = told.find((x) => x.scope === `p:${POOLS[p]!.key}`);
              const asks = queue.filter((q) => q.pool === p);
              const capacity = asks.length > 0 ? TERMS.size + reserveFor(asks[0]!) : Infinity;
              const othersAsking = asks.filter((q) => q.worker !== w).length;
              if (total(p) < capacity || heldBy(w, p) === 0 || othersAsking === 0) {
                expect(entry).toBeUndefined();
                continue;
              }
              expect(entry?.idle).toBe(othersAsking);
              const wants = (v: number): number => heldBy(v, p) + asks.filter((q) => q.worker === v).length;
              const wanted = WORKERS.reduce((n, v) => n + wants(v), 0);
              const floor = Math.floor((capacity * wants(w)) / wanted);
              const kept = heldBy(w, p) - entry!.count;
              expect(entry!.count).toBeGreaterThanOrEqual(0);
              if (entry!.count > 0) expect([floor, floor + 1]).toContain(kept);
              else expect(kept).toBeLessThanOrEqual(floor + 1);
            }
            if (queue.length === 0) expect(told).toEqual([]);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
