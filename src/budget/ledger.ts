// The one budget of server and client slots for the whole proxy, however many
// workers share it. It lives in the primary (or, in a single-process proxy,
// beside the pools) and is told only when a server is to be opened or has
// closed, and when a client is to be admitted or has left: never per
// transaction. Idle servers stay in their worker; the ledger counts slots.
//
// A server slot is asked for in one of two ways:
//   demand  for waiting clients: granted when the pool, its database and its
//           user have room, else queued in arrival order (the oldest waiter's
//           time) until a slot frees up. While an ask is queued, workers are
//           put under pressure to close a free server instead of keeping it:
//           for a full pool, those holding more than their fair share of it;
//           for a database or user limit, those with an idle server of a
//           sibling pool (as PgBouncer evicts one).
//   fill    for min_pool_size: granted up to the floor, else denied; never queued.
// Limits arrive with each ask (every worker has the same configuration), so
// the primary reads no configuration.

export type SlotKind = 'demand' | 'fill';

/** A pool's limits, as its worker computed them from the configuration. */
export interface PoolTerms {
  size: number;
  reserveSize: number;
  reserveTimeoutMs: number;
  minSize: number;
  /** For this pool's database (0 = none). */
  maxDbConnections: number;
  /** For this pool's user (0 = none). */
  maxUserConnections: number;
}

export interface PoolId {
  /** database and user joined by NUL: unique per pool across workers. */
  key: string;
  database: string;
  user: string;
}

/**
 * A worker should give up idle servers that match `scope` (`p:` pool key,
 * `d:` database, `u:` user), at most `count`, for asks waiting. For a pool, `count` is what the worker holds
 * beyond its fair share, given up even while its own clients wait, and `idle`
 * what it gives up when none of them waits; for a database or user limit,
 * `count` is the number of asks waiting and is given up only when idle.
 */
export interface Pressure {
  scope: string;
  count: number;
  /** For a pool: servers to give up when none of the worker's own clients waits (asks of other workers). */
  idle?: number;
}

/** A limit that refused a client, named as PgBouncer names it in its message. */
export type ClientRefusal = 'max_client_conn' | 'max_db_client_connections' | 'max_user_client_connections';

export interface ClientTerms {
  database: string;
  user: string;
  maxClientConn: number;
  /** 0 = none; admin console users are not held to it (as in PgBouncer). */
  maxDbClientConnections: number;
  maxUserClientConnections: number;
}

/** What the ledger tells the workers. Called after each change, never in the middle of one. */
export interface LedgerEffects {
  granted(worker: number, pool: string, kind: SlotKind, count: number): void;
  denied(worker: number, pool: string, count: number): void;
  /** The full set of pressures on `worker` now (empty: none). Sent only when it changed. */
  pressure(worker: number, pressures: Pressure[]): void;
}

interface PoolRecord {
  id: PoolId;
  terms: PoolTerms;
  /** Slots held (servers open or being opened) per worker. */
  held: Map<number, number>;
  total: number;
}

interface Ask {
  worker: number;
  pool: PoolRecord;
  since: number;
}

type Blocker = 'pool' | 'database' | 'user';

/**
 * How long a worker's ask may wait for a slot of a pool that cannot be split
 * evenly among the workers wanting it before a holder must give one up. A
 * hand-over costs a server login (a few ms), so this bounds that overhead to a
 * few per cent, and a waiter's extra wait to about this plus one login.
 */
export const FAIRNESS_QUANTUM_MS = 100;

/** Stands for "the worker's pressure may differ from what was sent": matches no pressure text. */
const STALE = '';

export class Ledger {
  private readonly pools = new Map<string, PoolRecord>();
  private readonly perDatabase = new Map<string, number>();
  private readonly perUser = new Map<string, number>();
  /** Queued demand asks, oldest first. */
  private readonly queue: Ask[] = [];
  /** The pressure last sent to each worker, as compared text. */
  private readonly sentPressure = new Map<number, string>();
  private clients = 0;
  private readonly clientsPerDatabase = new Map<string, number>();
  private readonly clientsPerUser = new Map<string, number>();
  /** Each worker's admitted clients by `database\0user`, returned when it dies. */
  private readonly clientsOf = new Map<number, Map<string, number>>();
  /** Effects gathered during a change, delivered once it is complete (the effects may call back in). */
  private readonly outbox: Array<() => void> = [];
  private depth = 0;

  constructor(
    private readonly effects: LedgerEffects,
    private readonly now: () => number = Date.now,
  ) {}

  /** `worker` wants `count` slots of a pool for waiters since `since` (demand), or for min_pool_size (fill). */
  ask(worker: number, id: PoolId, terms: PoolTerms, kind: SlotKind, count: number, since: number): void {
    this.change(() => {
      const pool = this.record(id, terms);
      if (kind === 'fill') {
        let granted = 0;
        while (granted < count && pool.total < Math.min(terms.minSize, terms.size) && this.blocker(pool, false) === null) {
          this.take(worker, pool);
          granted++;
        }
        if (granted > 0) this.send(() => this.effects.granted(worker, id.key, 'fill', granted));
        if (granted < count) this.send(() => this.effects.denied(worker, id.key, count - granted));
        this.forgetIfUnused(pool);
        return;
      }
      for (let i = 0; i < count; i++) this.enqueue({ worker, pool, since });
    });
  }

  /** `worker` no longer wants `count` of its queued asks for `pool` (its waiters left); the newest go first. */
  withdraw(worker: number, pool: string, count: number): void {
    this.change(() => {
      for (let i = this.queue.length - 1; i >= 0 && count > 0; i--) {
        const ask = this.queue[i]!;
        if (ask.worker !== worker || ask.pool.id.key !== pool) continue;
        this.queue.splice(i, 1);
        count--;
        this.forgetIfUnused(ask.pool);
      }
    });
  }

  /** `worker` closed `count` servers of `pool` (or never opened them). */
  release(worker: number, pool: string, count: number): void {
    this.change(() => {
      const record = this.pools.get(pool);
      if (record) this.give(worker, record, count);
      // A release may be a yield, which used up some of that worker's pressure: tell it again what stands.
      if (this.sentPressure.has(worker)) this.sentPressure.set(worker, STALE);
    });
  }

  /** A worker died: every slot and client it held is free at once. */
  workerGone(worker: number): void {
    this.change(() => {
      for (const record of [...this.pools.values()]) this.give(worker, record, record.held.get(worker) ?? 0);
      for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i]!.worker === worker) this.queue.splice(i, 1);
      for (const [key, n] of this.clientsOf.get(worker) ?? []) {
        const [database, user] = key.split('\0') as [string, string];
        for (let i = 0; i < n; i++) this.dropClient(database, user);
      }
      this.clientsOf.delete(worker);
      this.sentPressure.delete(worker);
      for (const record of [...this.pools.values()]) this.forgetIfUnused(record);
    });
  }

  /** Time passed: a queued ask may now reach into the reserve pool. */
  tick(): void {
    if (this.queue.length > 0) this.change(() => undefined);
  }

  /** Admits a logged-in client, or names the limit that refuses it. */
  admit(worker: number, terms: ClientTerms): ClientRefusal | null {
    const { database, user } = terms;
    if (this.clients >= terms.maxClientConn) return 'max_client_conn';
    if (terms.maxDbClientConnections > 0 && (this.clientsPerDatabase.get(database) ?? 0) >= terms.maxDbClientConnections) return 'max_db_client_connections';
    if (terms.maxUserClientConnections > 0 && (this.clientsPerUser.get(user) ?? 0) >= terms.maxUserClientConnections) return 'max_user_client_connections';
    this.clients++;
    bump(this.clientsPerDatabase, database, 1);
    bump(this.clientsPerUser, user, 1);
    const mine = this.clientsOf.get(worker) ?? new Map<string, number>();
    this.clientsOf.set(worker, mine);
    bump(mine, `${database}\0${user}`, 1);
    return null;
  }

  /** An admitted client of `worker` left. */
  clientLeft(worker: number, database: string, user: string): void {
    const mine = this.clientsOf.get(worker);
    const key = `${database}\0${user}`;
    if (!mine || (mine.get(key) ?? 0) === 0) return; // not ours to drop (a restarted worker's stale message)
    bump(mine, key, -1);
    this.dropClient(database, user);
  }

  /** Slots held for `pool` by all workers (servers open or being opened). */
  poolTotal(pool: string): number {
    return this.pools.get(pool)?.total ?? 0;
  }

  /** Admitted clients, all workers together. */
  get clientCount(): number {
    return this.clients;
  }

  /** Queued demand asks (for tests and SHOW). */
  get queued(): number {
    return this.queue.length;
  }

  // ---- the change cycle: mutate, grant what fits, update pressure, then tell --------

  private change(mutate: () => void): void {
    this.depth++;
    try {
      mutate();
      this.grantWhatFits();
      this.updatePressure();
    } finally {
      this.depth--;
    }
    if (this.depth === 0) {
      // Effects may call back into the ledger (in a single process, synchronously): each call is its own change.
      for (let effect = this.outbox.shift(); effect; effect = this.outbox.shift()) effect();
    }
  }

  private send(effect: () => void): void {
    this.outbox.push(effect);
  }

  private grantWhatFits(): void {
    const granted = new Map<string, { worker: number; pool: string; count: number }>();
    for (let i = 0; i < this.queue.length; ) {
      const ask = this.queue[i]!;
      if (this.blocker(ask.pool, this.now() - ask.since >= ask.pool.terms.reserveTimeoutMs) !== null) {
        i++;
        continue;
      }
      this.queue.splice(i, 1);
      this.take(ask.worker, ask.pool);
      const key = `${ask.worker}\0${ask.pool.id.key}`;
      const g = granted.get(key) ?? { worker: ask.worker, pool: ask.pool.id.key, count: 0 };
      g.count++;
      granted.set(key, g);
    }
    for (const g of granted.values()) this.send(() => this.effects.granted(g.worker, g.pool, 'demand', g.count));
  }

  /** Which limit keeps `pool` from one more slot, or null when it has room. */
  private blocker(pool: PoolRecord, reserve: boolean): Blocker | null {
    const { terms, id } = pool;
    if (pool.total >= terms.size + (reserve ? terms.reserveSize : 0)) return 'pool';
    if (terms.maxDbConnections > 0 && (this.perDatabase.get(id.database) ?? 0) >= terms.maxDbConnections) return 'database';
    if (terms.maxUserConnections > 0 && (this.perUser.get(id.user) ?? 0) >= terms.maxUserConnections) return 'user';
    return null;
  }

  /** Puts pressure on the workers whose idle servers could serve a queued ask. */
  private updatePressure(): void {
    const byWorker = new Map<number, Map<string, Pressure>>();
    const press = (worker: number, scope: string, count: number, idle?: number): void => {
      const mine = byWorker.get(worker) ?? new Map<string, Pressure>();
      byWorker.set(worker, mine);
      const p = mine.get(scope);
      if (p) p.count += count;
      else mine.set(scope, idle === undefined ? { scope, count } : { scope, count, idle });
    };
    const asksByPool = new Map<PoolRecord, Ask[]>();
    for (const ask of this.queue) {
      const asks = asksByPool.get(ask.pool) ?? [];
      asksByPool.set(ask.pool, asks);
      asks.push(ask);
    }
    for (const [pool, asks] of asksByPool) {
      const oldest = asks[0]!; // the queue is in arrival order
      const reserve = this.now() - oldest.since >= pool.terms.reserveTimeoutMs;
      const blocker = this.blocker(pool, reserve);
      const { id } = pool;
      if (blocker === 'pool') {
        // Every holder gives up a server nobody of its own waits for; one beyond its share, even if someone does.
        const over = this.overShare(pool, asks, reserve);
        for (const [worker, n] of pool.held) {
          const othersAsking = asks.filter((a) => a.worker !== worker).length;
          if (n > 0 && othersAsking > 0) press(worker, `p:${id.key}`, over.get(worker) ?? 0, othersAsking);
        }
      } else if (blocker !== null) {
        // A sibling pool's idle server makes room (as PgBouncer evicts one); a busy one is not taken from its own waiters.
        const sibling = (p: PoolRecord): boolean => (blocker === 'database' ? p.id.database === id.database : p.id.user === id.user);
        const holders = new Set<number>();
        for (const p of this.pools.values()) if (sibling(p)) for (const [worker, n] of p.held) if (n > 0) holders.add(worker);
        for (const worker of holders) press(worker, blocker === 'database' ? `d:${id.database}` : `u:${id.user}`, asks.length);
      }
    }
    for (const worker of new Set([...this.sentPressure.keys(), ...byWorker.keys()])) {
      const list = [...(byWorker.get(worker)?.values() ?? [])];
      const text = JSON.stringify(list);
      if ((this.sentPressure.get(worker) ?? '[]') === text) continue;
      if (list.length === 0) this.sentPressure.delete(worker);
      else this.sentPressure.set(worker, text);
      this.send(() => this.effects.pressure(worker, list));
    }
  }

  /**
   * The slots each worker holds beyond its fair share of a full pool while
   * another worker's asks wait. Each worker's share is in proportion to what it
   * wants (slots held plus asks queued), so under steady contention every
   * worker keeps serving its own waiters with its share and no server changes
   * hands per transaction. The slots that do not divide evenly go first to a
   * worker whose ask has waited FAIRNESS_QUANTUM_MS, oldest first, then stay
   * with their holders: a pool smaller than the number of workers wanting it
   * changes hands at most about once per quantum. A holder keeps up to a tenth
   * of its share more than its share, so that shares of a large pool moving by
   * an ask or two do not make servers change hands.
   */
  private overShare(pool: PoolRecord, asks: readonly Ask[], reserve: boolean): Map<number, number> {
    const capacity = pool.terms.size + (reserve ? pool.terms.reserveSize : 0);
    const wants = new Map(pool.held);
    const oldestAsk = new Map<number, number>();
    for (const a of asks) {
      wants.set(a.worker, (wants.get(a.worker) ?? 0) + 1);
      if (!oldestAsk.has(a.worker)) oldestAsk.set(a.worker, a.since);
    }
    let wanted = 0;
    for (const n of wants.values()) wanted += n;
    const share = new Map<number, number>();
    let given = 0;
    for (const [worker, want] of wants) {
      const s = Math.floor((capacity * want) / wanted);
      share.set(worker, s);
      given += s;
    }
    const now = this.now();
    const starvedSince = (w: number): number | null => {
      const since = oldestAsk.get(w);
      return since !== undefined && now - since >= FAIRNESS_QUANTUM_MS ? since : null;
    };
    const order = [...wants.keys()].sort((a, b) => {
      const sa = starvedSince(a);
      const sb = starvedSince(b);
      if (sa !== null || sb !== null) return sa === null ? 1 : sb === null ? -1 : sa - sb;
      return (pool.held.get(b) ?? 0) - (pool.held.get(a) ?? 0) || a - b;
    });
    for (const worker of order) {
      if (given >= capacity) break;
      if (share.get(worker)! < wants.get(worker)!) {
        share.set(worker, share.get(worker)! + 1);
        given++;
      }
    }
    const over = new Map<number, number>();
    for (const [worker, held] of pool.held) {
      // Slack of a tenth of a share: wants move by a few asks from one moment to the next, and a large
      // pool must not trade servers (a login each) for that. Shares below 10 get none (a pool of 1 rotates).
      const excess = held - share.get(worker)! - Math.floor(share.get(worker)! / 10);
      if (excess > 0 && asks.some((a) => a.worker !== worker)) over.set(worker, excess);
    }
    return over;
  }

  // ---- bookkeeping ------------------------------------------------------------

  private record(id: PoolId, terms: PoolTerms): PoolRecord {
    let record = this.pools.get(id.key);
    if (!record) {
      record = { id, terms, held: new Map(), total: 0 };
      this.pools.set(id.key, record);
    }
    record.terms = terms; // the latest ask's terms win (a reload changes them)
    return record;
  }

  private enqueue(ask: Ask): void {
    let i = this.queue.length;
    while (i > 0 && this.queue[i - 1]!.since > ask.since) i--;
    this.queue.splice(i, 0, ask);
  }

  private take(worker: number, pool: PoolRecord): void {
    pool.held.set(worker, (pool.held.get(worker) ?? 0) + 1);
    pool.total++;
    bump(this.perDatabase, pool.id.database, 1);
    bump(this.perUser, pool.id.user, 1);
  }

  private give(worker: number, pool: PoolRecord, count: number): void {
    const n = Math.min(count, pool.held.get(worker) ?? 0);
    if (n === 0) return;
    if (n === pool.held.get(worker)) pool.held.delete(worker);
    else pool.held.set(worker, pool.held.get(worker)! - n);
    pool.total -= n;
    bump(this.perDatabase, pool.id.database, -n);
    bump(this.perUser, pool.id.user, -n);
    this.forgetIfUnused(pool);
  }

  private forgetIfUnused(pool: PoolRecord): void {
    if (pool.total === 0 && !this.queue.some((a) => a.pool === pool)) this.pools.delete(pool.id.key);
  }

  private dropClient(database: string, user: string): void {
    this.clients--;
    bump(this.clientsPerDatabase, database, -1);
    bump(this.clientsPerUser, user, -1);
  }
}

/** Adds `delta` to a count, deleting it at zero so maps hold only what is in use. */
function bump(map: Map<string, number>, key: string, delta: number): void {
  const n = (map.get(key) ?? 0) + delta;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}
