// A worker's side of the budget: the pools ask it before opening a server and
// tell it when they closed one; it asks the ledger (in this process, or in the
// primary over IPC) and hands the grants to the pools. It also keeps the
// ledger's pressure, so that an idle server another worker's (or a sibling
// pool's) waiter needs is closed instead of kept, and admits clients.
//
// It counts the slots each pool holds: after any change a pool holding more
// slots than it has servers (open or opening) gives the difference back, so a
// slot is returned once however a server ended.
import type { Pool, PoolLimits } from '../pool/pool.js';
import { Ledger, type ClientRefusal, type ClientTerms, type PoolId, type PoolTerms, type Pressure, type SlotKind } from './ledger.js';
import { BUDGET, isFromLedger, type FromLedger, type ToLedger } from './messages.js';
import { PendingReplies } from '../workers/replies.js';

/** How the budget reaches its ledger. */
interface LedgerPort {
  ask(id: PoolId, terms: PoolTerms, kind: SlotKind, count: number, since: number): void;
  withdraw(pool: string, count: number): void;
  release(pool: string, count: number): void;
  admit(terms: ClientTerms): Promise<ClientRefusal | null> | ClientRefusal | null;
  clientLeft(database: string, user: string): void;
  tick(): void;
}

/** The pools a budget serves (the PoolManager). */
export interface PoolDirectory {
  find(key: string): Pool | undefined;
  all(): Iterable<Pool>;
}

/**
 * How long a server must have been idle before it is closed for a waiter in
 * another worker (or a sibling pool). Shorter than a server login, longer than
 * the gap between two transactions of a busy client.
 */
export const IDLE_GRACE_MS = 20;

/** Admission replies from the primary normally take well under a millisecond; this bounds a stuck one. */
const ADMIT_TIMEOUT_MS = 5_000;

export class Budget implements PoolLimits {
  private readonly held = new Map<string, number>();
  private pressures = new Map<string, Pressure>();
  private sweep: NodeJS.Timeout | null = null;
  private pools: PoolDirectory = { find: () => undefined, all: () => [] };
  private readonly port: LedgerPort;

  /** A budget with its own ledger: a single-process proxy (worker 0). */
  static local(): Budget {
    return new Budget((budget) => {
      const ledger = new Ledger({
        granted: (_w, pool, kind, count) => budget.onGranted(pool, kind, count),
        denied: (_w, pool, count) => budget.onDenied(pool, count),
        pressure: (_w, pressures) => budget.onPressure(pressures),
      });
      return {
        ask: (id, terms, kind, count, since) => ledger.ask(0, id, terms, kind, count, since),
        withdraw: (pool, count) => ledger.withdraw(0, pool, count),
        release: (pool, count) => ledger.release(0, pool, count),
        admit: (terms) => ledger.admit(0, terms),
        clientLeft: (database, user) => ledger.clientLeft(0, database, user),
        tick: () => ledger.tick(),
      };
    });
  }

  /** A worker's budget: the primary's ledger, over the IPC channel. */
  static shared(channel: { send(msg: ToLedger): void; on(event: 'message', listener: (msg: unknown) => void): void }): Budget {
    return new Budget((budget) => {
      const admissions = new PendingReplies<{ refusal: ClientRefusal | null }>(ADMIT_TIMEOUT_MS);
      /** Asked and not answered yet, to give a late admission back. */
      const pendingTerms = new Map<number, ClientTerms>();
      channel.on('message', (msg) => {
        if (!isFromLedger(msg)) return;
        if (msg.op === 'admitted') {
          // Admitted after we gave up waiting: that slot is nobody's, give it back.
          if (!admissions.settle(msg.id, { refusal: msg.refusal }) && msg.refusal === null) channel.send({ type: BUDGET, op: 'left', database: pendingTerms.get(msg.id)?.database ?? '', user: pendingTerms.get(msg.id)?.user ?? '' });
          pendingTerms.delete(msg.id);
        }
        else budget.fromLedger(msg);
      });
      return {
        ask: (id, terms, kind, count, since) => channel.send({ type: BUDGET, op: 'ask', id, terms, kind, count, since }),
        withdraw: (pool, count) => channel.send({ type: BUDGET, op: 'withdraw', pool, count }),
        release: (pool, count) => channel.send({ type: BUDGET, op: 'release', pool, count }),
        // No answer in time: refused as full rather than admitted beyond the limit.
        admit: async (terms) => {
          const answer = await admissions.request((id) => {
            pendingTerms.set(id, terms);
            channel.send({ type: BUDGET, op: 'admit', id, terms });
          });
          return answer === null ? 'max_client_conn' : answer.refusal;
        },
        clientLeft: (database, user) => channel.send({ type: BUDGET, op: 'left', database, user }),
        tick: () => undefined, // the primary ticks its ledger
      };
    });
  }

  private constructor(connect: (budget: Budget) => LedgerPort) {
    this.port = connect(this);
  }

  /** The pools to hand grants to (the PoolManager, once it exists). */
  serve(pools: PoolDirectory): void {
    this.pools = pools;
  }

  // ---- PoolLimits: what a pool asks -----------------------------------------

  request(pool: Pool, kind: SlotKind, count: number, since: number): void {
    this.port.ask({ key: pool.key, database: pool.database, user: pool.address.user }, pool.terms, kind, count, since);
  }

  withdraw(pool: Pool, count: number): void {
    this.port.withdraw(pool.key, count);
  }

  released(pool: Pool): void {
    const held = this.held.get(pool.key) ?? 0;
    const surplus = held - pool.total;
    if (surplus <= 0) return;
    if (surplus === held) this.held.delete(pool.key);
    else this.held.set(pool.key, held - surplus);
    this.port.release(pool.key, surplus);
  }

  /**
   * A server of `pool` just became free: close it for a waiter in another
   * worker? Only while this worker holds more than its share of the pool (the
   * ledger said so), even with waiters of its own. Servers nobody here wants
   * are closed by sweepIdle once idle IDLE_GRACE_MS. The pool never asks this
   * of a server that has not served one of its waiters yet, so every grant
   * serves at least one transaction.
   */
  shouldYield(pool: Pool): boolean {
    if (this.pressures.size === 0) return false; // the usual case, once per transaction: no string made
    const same = this.pressures.get(`p:${pool.key}`);
    if (!same || same.count === 0) return false;
    same.count--;
    return true;
  }

  tick(): void {
    this.port.tick();
  }

  // ---- clients ------------------------------------------------------------------

  async admitClient(terms: ClientTerms): Promise<ClientRefusal | null> {
    return this.port.admit(terms);
  }

  clientLeft(database: string, user: string): void {
    this.port.clientLeft(database, user);
  }

  // ---- what the ledger says -------------------------------------------------------

  private fromLedger(msg: Exclude<FromLedger, { op: 'admitted' }>): void {
    if (msg.op === 'granted') this.onGranted(msg.pool, msg.kind, msg.count);
    else if (msg.op === 'denied') this.onDenied(msg.pool, msg.count);
    else this.onPressure(msg.pressures);
  }

  private onGranted(key: string, kind: SlotKind, count: number): void {
    const pool = this.pools.find(key);
    if (!pool) {
      this.port.release(key, count); // the pool was dropped meanwhile
      return;
    }
    this.held.set(key, (this.held.get(key) ?? 0) + count);
    pool.granted(kind, count);
    this.released(pool); // what it did not use goes back
  }

  private onDenied(key: string, count: number): void {
    this.pools.find(key)?.denied(count);
  }

  private onPressure(list: Pressure[]): void {
    this.pressures = new Map(list.map((p) => [p.scope, { ...p }]));
    this.sweepIdle();
  }

  /**
   * Closes idle servers that a waiter elsewhere could use, once they have been
   * idle IDLE_GRACE_MS: a server freed between two transactions of this
   * worker's own clients is not worth a server login elsewhere. While such
   * pressure lasts, it looks again every IDLE_GRACE_MS.
   */
  private sweepIdle(): void {
    const cutoff = Date.now() - IDLE_GRACE_MS;
    let pending = false;
    for (const pool of this.pools.all()) {
      if (pool.hasWaiters) continue;
      const same = this.pressures.get(`p:${pool.key}`);
      const siblings = [this.pressures.get(`d:${pool.database}`), this.pressures.get(`u:${pool.address.user}`)];
      for (const p of [same, ...siblings]) {
        if (!p) continue;
        // A pool's own pressure: over its share (count), or others' waiters (idle); a sibling's: count.
        const budget = (): number => p.count + (p === same ? (p.idle ?? 0) : 0);
        while (budget() > 0 && pool.evictIdle(cutoff)) {
          if (p.count > 0) p.count--;
          else p.idle!--;
        }
      }
    }
    // Servers busy now may be idle by then.
    for (const p of this.pressures.values()) if (p.count > 0 || (p.idle ?? 0) > 0) pending = true;
    if (pending && !this.sweep) {
      this.sweep = setTimeout(() => {
        this.sweep = null;
        this.sweepIdle();
      }, IDLE_GRACE_MS);
      this.sweep.unref();
    }
  }
}
