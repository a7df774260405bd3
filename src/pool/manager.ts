// All pools, one per (database, user), created on first use and dropped once
// unused for autodb_idle_timeout (so pools, and the credentials they keep, do
// not pile up). The limits they share (max_db_connections per database,
// max_user_connections per user, and every limit across workers) are the
// budget's (budget/budget.ts). PAUSE and DISABLE are kept here per database
// (or for all), so that a pool made while paused starts paused.
import type { Budget } from '../budget/budget.js';
import type { Logger } from '../log/logger.js';
import { Pool, type PoolSettings } from './pool.js';
import type { ServerAddress } from './server.js';

export class PoolManager {
  private readonly pools = new Map<string, Pool>();
  /** PAUSE without a database. */
  private pausedAll = false;
  private readonly pausedDatabases = new Set<string>();
  /** DISABLE db: new clients of these databases are refused. */
  private readonly disabledDatabases = new Set<string>();

  constructor(
    private readonly log: Logger,
    private readonly budget: Budget,
  ) {
    budget.serve(this);
  }

  get(database: string, address: ServerAddress, settings: PoolSettings): Pool {
    const key = `${database}\0${address.user}`;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new Pool(database, address, settings, this.budget, this.log.child({ pool: `${database}/${address.user}` }));
      if (this.isPaused(database)) pool.pause();
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** The pool named `key` (Pool.key), if it exists. */
  find(key: string): Pool | undefined {
    return this.pools.get(key);
  }

  all(): IterableIterator<Pool> {
    return this.pools.values();
  }

  /** The pools of `database`, or all of them (null). */
  *of(database: string | null): Generator<Pool> {
    for (const pool of this.pools.values()) if (database === null || pool.database === database) yield pool;
  }

  /** PAUSE [db]: this worker's pools of it hold new transactions; pools made later start paused. */
  pause(database: string | null): void {
    if (database === null) this.pausedAll = true;
    else this.pausedDatabases.add(database);
    for (const pool of this.of(database)) pool.pause();
  }

  /** RESUME [db]; RESUME alone resumes every database. */
  resume(database: string | null): void {
    if (database === null) {
      this.pausedAll = false;
      this.pausedDatabases.clear();
    } else this.pausedDatabases.delete(database);
    for (const pool of this.of(database)) if (!this.isPaused(pool.database)) pool.resume();
  }

  /** PAUSE and DISABLE exactly as `states` has them (a worker that starts while the others are paused). */
  setStates(states: { pausedAll: boolean; paused: readonly string[]; disabled: readonly string[] }): void {
    this.pausedAll = states.pausedAll;
    this.pausedDatabases.clear();
    for (const db of states.paused) this.pausedDatabases.add(db);
    this.disabledDatabases.clear();
    for (const db of states.disabled) this.disabledDatabases.add(db);
    for (const pool of this.pools.values()) {
      if (this.isPaused(pool.database)) pool.pause();
      else if (pool.isPaused) pool.resume();
    }
  }

  isPaused(database: string): boolean {
    return this.pausedAll || this.pausedDatabases.has(database);
  }

  /** Paused as a whole (SHOW STATE). */
  get allPaused(): boolean {
    return this.pausedAll;
  }

  setDisabled(database: string, disabled: boolean): void {
    if (disabled) this.disabledDatabases.add(database);
    else this.disabledDatabases.delete(database);
  }

  isDisabled(database: string): boolean {
    return this.disabledDatabases.has(database);
  }

  /** The janitor's round: each pool's timers, then pools unused too long are dropped (get() makes them anew). */
  tick(now: number): void {
    for (const [key, pool] of this.pools) {
      pool.tick(now);
      if (!pool.unusedTooLong(now)) continue;
      this.pools.delete(key);
      pool.closeAll();
      this.log.debug({ pool: pool.name }, 'unused pool dropped (autodb_idle_timeout)');
    }
    this.budget.tick();
  }

  closeAll(): void {
    for (const pool of this.pools.values()) pool.closeAll();
  }
}
