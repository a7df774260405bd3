// Waiting for what a test can observe (a query active in pg_stat_activity, a
// client queued in a pool, a log line, a closed socket) instead of sleeping and
// hoping the other side got there first: a sleep is either too short on a busy
// machine or longer than needed everywhere else.
import type { RunningProxy } from '../../src/proxy.js';
import { adminSql, type ClusterInfo } from './postgres.js';

export interface PollOptions {
  /** Give up after this long (default 5 s). */
  timeoutMs?: number;
  /** Pause between two checks (default 25 ms). */
  intervalMs?: number;
}

/**
 * Resolves as soon as `condition` holds; rejects naming `description` once
 * `timeoutMs` pass without it. An exception from `condition` ends the wait at
 * once (a condition that may fail transiently must turn that into `false`).
 */
export async function until(description: string, condition: () => boolean | Promise<boolean>, opts: PollOptions = {}): Promise<void> {
  const { timeoutMs = 5000, intervalMs = 25 } = opts;
  const started = Date.now();
  for (;;) {
    if (await condition()) return;
    if (Date.now() - started >= timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${description}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Clients queued behind busy servers in this proxy's pools of `database`: SHOW POOLS'
 * cl_waiting of the pools not opening a server (cl_waiting also counts a client
 * waiting for a server on its way, which is not being held back).
 */
export function queuedClients(proxy: RunningProxy, database: string): number {
  const now = Date.now();
  let n = 0;
  for (const pool of proxy.context.pools.all()) {
    if (pool.database !== database) continue;
    const state = pool.state(now);
    if (state.login === 0) n += state.waiting;
  }
  return n;
}

/** Backends of `user` running exactly `query` right now, as PostgreSQL reports them. */
export async function activeQueries(cluster: ClusterInfo, user: string, query: string): Promise<number> {
  const text = (s: string): string => `'${s.replaceAll("'", "''")}'`;
  const sql = `SELECT count(*) FROM pg_stat_activity WHERE usename = ${text(user)} AND state = 'active' AND query = ${text(query)}`;
  return Number(await adminSql(cluster, sql));
}
