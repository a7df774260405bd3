// All pools, one per (database, user), created on first use and dropped once
// unused for autodb_idle_timeout (so pools, and the credentials they keep, do
// not pile up), and the limits they share: max_db_connections per database,
// max_user_connections per user.
import type { Logger } from '../log/logger.js';
import { Pool, type PoolLimits, type PoolSettings } from './pool.js';
import type { ServerAddress } from './server.js';

export interface SharedLimits {
  maxDbConnections: number;
  /** Per-user cap: the users: entry's max_user_connections, else the global one (0 = none). */
  maxUserConnections: (user: string) => number;
}

export class PoolManager implements PoolLimits {
  private readonly pools = new Map<string, Pool>();

  constructor(
    private readonly log: Logger,
    private readonly limits: SharedLimits,
  ) {}

  get(database: string, address: ServerAddress, settings: PoolSettings): Pool {
    const key = `${database}\0${address.user}`;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new Pool(database, address, settings, this, this.log.child({ pool: `${database}/${address.user}` }));
      this.pools.set(key, pool);
    }
    return pool;
  }

  all(): IterableIterator<Pool> {
    return this.pools.values();
  }

  /** Whether `pool` may open a server; at a shared limit, an idle server of a sibling pool is closed to make room (as PgBouncer does). */
  mayOpen(pool: Pool): boolean {
    const { maxDbConnections } = this.limits;
    const sameDb = (p: Pool): boolean => p.database === pool.database;
    if (maxDbConnections > 0 && this.sum(sameDb) >= maxDbConnections && !(this.evict(pool, sameDb) && this.sum(sameDb) < maxDbConnections)) return false;
    const maxUser = this.limits.maxUserConnections(pool.address.user);
    const sameUser = (p: Pool): boolean => p.address.user === pool.address.user;
    if (maxUser > 0 && this.sum(sameUser) >= maxUser && !(this.evict(pool, sameUser) && this.sum(sameUser) < maxUser)) return false;
    return true;
  }

  private evict(pool: Pool, sibling: (p: Pool) => boolean): boolean {
    for (const other of this.pools.values()) {
      if (other !== pool && sibling(other) && other.evictIdle()) return true;
    }
    return false;
  }

  released(pool: Pool): void {
    if (this.limits.maxDbConnections === 0 && this.limits.maxUserConnections(pool.address.user) === 0) return;
    for (const other of this.pools.values()) {
      if (other !== pool && other.hasWaiters && (other.database === pool.database || other.address.user === pool.address.user)) other.wake();
    }
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
  }

  closeAll(): void {
    for (const pool of this.pools.values()) pool.closeAll();
  }

  private sum(match: (p: Pool) => boolean): number {
    let n = 0;
    for (const p of this.pools.values()) if (match(p)) n += p.total;
    return n;
  }
}
