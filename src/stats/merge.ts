// Adds up the snapshots of several workers into what one PgBouncer would show:
// pools, databases and users summed by name, counters summed, maxwait the
// largest, SHOW MEM's rows summed by name (the instance's memory), client,
// server and listener lists concatenated (each row keeps its worker).
import { addCounters, zeroCounters, type CounterValues } from './counters.js';
import { addProcessCounters, zeroProcessCounters, type ProcessCounterValues } from './process-counters.js';
import type { MemoryRow } from './memory.js';
import type { ConnectionRow, DatabaseRow, ListenerRow, PoolRow, UserRow, WorkerSnapshot } from './snapshot.js';

/** SHOW STATS for one database: totals since start and the last stats period's increase. */
export interface DatabaseStats {
  database: string;
  totals: CounterValues;
  last_period: CounterValues;
}

export interface ReloadTotals {
  ok: number;
  failed: number;
}

export interface ClusterStats {
  /** Workers whose snapshot is included (a worker that did not answer in time is left out). */
  workers: number[];
  pools: PoolRow[];
  databases: DatabaseRow[];
  stats: DatabaseStats[];
  clients: ConnectionRow[];
  servers: ConnectionRow[];
  users: UserRow[];
  listeners: ListenerRow[];
  memory: MemoryRow[];
  lists: { databases: number; users: number; pools: number; used_clients: number; login_clients: number; used_servers: number };
  /** The configured limits: one budget for all workers, so the same in every snapshot. */
  limits: { max_client_conn: number; max_user_connections: number };
  /** PAUSE without a database holds in some worker (SHOW STATE). */
  paused: boolean;
  /** Configuration reloads by result, counted where they are decided (the primary with workers); set by the collector. */
  reloads?: ReloadTotals;
  /** Failed and throttled logins, refused lookups, uncaught faults: summed over the workers. */
  process: ProcessCounterValues;
}

const POOL_SUMS = ['cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active', 'sv_active_cancel', 'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login'] as const satisfies readonly (keyof PoolRow)[];

export function mergeSnapshots(snapshots: readonly WorkerSnapshot[]): ClusterStats {
  const pools = new Map<string, PoolRow>();
  const databases = new Map<string, DatabaseRow>();
  const stats = new Map<string, DatabaseStats>();
  const clients: ConnectionRow[] = [];
  const servers: ConnectionRow[] = [];
  const users = new Map<string, UserRow>();
  const listeners: ListenerRow[] = [];
  const memory = new Map<string, MemoryRow>();
  let connections = 0;
  const processTotals = zeroProcessCounters();
  const limits = { max_client_conn: snapshots[0]?.limits.max_client_conn ?? 0, max_user_connections: snapshots[0]?.limits.max_user_connections ?? 0 };
  for (const snap of snapshots) {
    connections += snap.connections;
    if (snap.process) addProcessCounters(processTotals, snap.process);
    clients.push(...snap.clients);
    servers.push(...snap.servers);
    listeners.push(...(snap.listeners ?? []));
    for (const u of snap.users ?? []) {
      const into = users.get(u.name);
      if (!into) users.set(u.name, { ...u });
      else {
        into.current_connections += u.current_connections;
        into.current_client_connections += u.current_client_connections;
      }
    }
    for (const m of snap.memory ?? []) {
      const into = memory.get(m.name);
      if (!into) memory.set(m.name, { ...m });
      else {
        into.used += m.used;
        into.free += m.free;
        if (into.memtotal !== null && m.memtotal !== null) into.memtotal += m.memtotal;
      }
    }
    for (const p of snap.pools) {
      const key = `${p.database}\0${p.user}`;
      const into = pools.get(key);
      if (!into) {
        pools.set(key, { ...p, totals: { ...p.totals }, last_period: { ...p.last_period } });
      } else {
        for (const k of POOL_SUMS) into[k] += p[k];
        into.maxwait_us = Math.max(into.maxwait_us, p.maxwait_us);
        addCounters(into.totals, p.totals);
        addCounters(into.last_period, p.last_period);
      }
      let db = stats.get(p.database);
      if (!db) stats.set(p.database, (db = { database: p.database, totals: zeroCounters(), last_period: zeroCounters() }));
      addCounters(db.totals, p.totals);
      addCounters(db.last_period, p.last_period);
    }
    for (const d of snap.databases) {
      const into = databases.get(d.name);
      if (!into) databases.set(d.name, { ...d });
      else {
        into.current_connections += d.current_connections;
        into.current_client_connections = (into.current_client_connections ?? 0) + (d.current_client_connections ?? 0);
        // Every worker applies PAUSE and DISABLE; one that has means the proxy has (a worker mid-way still says so).
        into.paused = Math.max(into.paused ?? 0, d.paused ?? 0);
        into.disabled = Math.max(into.disabled ?? 0, d.disabled ?? 0);
      }
    }
  }
  const byName = <T>(key: (t: T) => string) => (a: T, b: T): number => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);
  const poolRows = [...pools.values()].sort(byName((p) => `${p.database}\0${p.user}`));
  const loggedIn = clients.length;
  return {
    workers: snapshots.map((s) => s.worker).sort((a, b) => a - b),
    pools: poolRows,
    databases: [...databases.values()].sort(byName((d) => d.name)),
    stats: [...stats.values()].sort(byName((s) => s.database)),
    clients,
    servers,
    users: [...users.values()].sort(byName((u) => u.name)),
    listeners,
    memory: [...memory.values()],
    lists: {
      databases: databases.size,
      users: users.size,
      pools: pools.size,
      used_clients: connections,
      login_clients: Math.max(0, connections - loggedIn),
      used_servers: servers.length + poolRows.reduce((n, p) => n + p.sv_login, 0),
    },
    limits,
    process: processTotals,
    paused: snapshots.some((s) => s.paused === true),
  };
}
