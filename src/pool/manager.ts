// All pools, one per (database, user), created on first use.
import type { Logger } from '../log/logger.js';
import { Pool, type PoolSettings } from './pool.js';
import type { ServerAddress } from './server.js';

export class PoolManager {
  private readonly pools = new Map<string, Pool>();

  constructor(private readonly log: Logger) {}

  get(database: string, address: ServerAddress, settings: PoolSettings): Pool {
    const key = `${database}\0${address.user}`;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new Pool(`${database}/${address.user}`, address, settings, this.log.child({ pool: `${database}/${address.user}` }));
      this.pools.set(key, pool);
    }
    return pool;
  }

  all(): IterableIterator<Pool> {
    return this.pools.values();
  }

  closeAll(): void {
    for (const pool of this.pools.values()) pool.closeAll();
  }
}
