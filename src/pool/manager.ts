// All pools, one per (database, user), created on first use and dropped once
// unused for autodb_idle_timeout (so pools, and the credentials they keep, do
// not pile up). The limits they share (max_db_connections per database,
// max_user_connections per user, and every limit across workers) are the
// budget's (budget/budget.ts).
import type { Budget } from '../budget/budget.js';
import type { Logger } from '../log/logger.js';
import { Pool, type PoolSettings } from './pool.js';
import type { ServerAddress } from './server.js';

export class PoolManager {
  private readonly pools = new Map<string, Pool>();

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
