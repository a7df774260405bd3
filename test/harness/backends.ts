// What PostgreSQL itself says about a database's backends, sampled while a
// test runs: the peak of backends running a query, and of backends at all.
// A proxy's own counters can be wrong in the same way as its pooling; these
// cannot.
import pg from 'pg';
import type { ClusterInfo } from './postgres.js';
import { USERS } from './postgres.js';

export interface BackendPeaks {
  /** Most backends of the database in state 'active' seen at once. */
  active: number;
  /** Most backends of the database seen at once, in any state. */
  total: number;
  samples: number;
}

/** Samples pg_stat_activity for `database` every few milliseconds until stop(). */
export class BackendSampler {
  private readonly peaks: BackendPeaks = { active: 0, total: 0, samples: 0 };
  private running = true;
  private readonly loop: Promise<void>;

  private constructor(
    private readonly client: pg.Client,
    database: string,
  ) {
    this.loop = this.run(database);
  }

  static async start(cluster: ClusterInfo, database: string): Promise<BackendSampler> {
    const client = new pg.Client({ host: cluster.socketDir, port: cluster.port, user: USERS.superuser.name, database: 'postgres' });
    await client.connect();
    return new BackendSampler(client, database);
  }

  /** Stops sampling (after at least one more sample) and returns the peaks. */
  async stop(): Promise<BackendPeaks> {
    this.running = false;
    await this.loop;
    await this.client.end();
    return this.peaks;
  }

  private async run(database: string): Promise<void> {
    const sql = `SELECT count(*)::int AS total, (count(*) FILTER (WHERE state = 'active'))::int AS active
                   FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'`;
    do {
      const { rows } = await this.client.query<{ total: number; active: number }>(sql, [database]);
      const row = rows[0]!;
      this.peaks.total = Math.max(this.peaks.total, row.total);
      this.peaks.active = Math.max(this.peaks.active, row.active);
      this.peaks.samples++;
      await new Promise((resolve) => setTimeout(resolve, 5));
    } while (this.running);
  }
}

/** Backends of `database` now, in any state. */
export async function backendCount(cluster: ClusterInfo, database: string): Promise<number> {
  const client = new pg.Client({ host: cluster.socketDir, port: cluster.port, user: USERS.superuser.name, database: 'postgres' });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'`, [database]);
    return rows[0]!.n;
  } finally {
    await client.end();
  }
}
