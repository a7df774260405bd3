// Merging worker snapshots: what one PgBouncer would show for all workers.
import { describe, expect, it } from 'vitest';
import { PoolCounters, zeroCounters, type CounterValues } from '../../../src/stats/counters.js';
import { mergeSnapshots } from '../../../src/stats/merge.js';
import type { MemoryRow } from '../../../src/stats/memory.js';
import type { ConnectionRow, PoolRow, UserRow, WorkerSnapshot } from '../../../src/stats/snapshot.js';

const counters = (n: number): CounterValues => ({ xact_count: n, query_count: 2 * n, server_assignment_count: n, received: 100 * n, sent: 1000 * n, xact_time: 10 * n, query_time: 5 * n, wait_time: n });

function pool(database: string, user: string, n: number, maxwait_us = 0): PoolRow {
  return { database, user, pool_mode: 'transaction', pool_size: 20, cl_active: n, cl_waiting: n + 1, cl_active_cancel_req: n, cl_waiting_cancel_req: 1, sv_active_cancel: n, sv_being_canceled: 1, load_balance_hosts: null, sv_active: n + 2, sv_idle: n + 3, sv_used: 1, sv_tested: 0, sv_login: 1, maxwait_us, totals: counters(n), last_period: counters(1) };
}

function client(worker: number, id: number): ConnectionRow {
  return { type: 'C', worker, id, user: 'u', database: 'app', state: 'active', addr: '127.0.0.1', port: 1, local_addr: '', local_port: 0, connect_time: 0, request_time: 0, wait_us: 0, close_needed: 0, link: null, remote_pid: 0, tls: '', application_name: '', prepared_statements: 0, fd: 10 + id, recv_pending: 0, send_pending: 0, client_encoding: 'UTF8', std_strings: 'on', datestyle: 'ISO, MDY', timezone: 'UTC' };
}

function user(name: string, servers: number, clients: number): UserRow {
  return { name, pool_size: null, reserve_pool_size: null, pool_mode: null, max_user_connections: 0, current_connections: servers, max_user_client_connections: 5, current_client_connections: clients };
}

const memory = (n: number): MemoryRow[] => [
  { name: 'client_cache', size: null, used: n, free: 0, memtotal: null },
  { name: 'v8_heap', size: 1, used: 100 * n, free: 10, memtotal: 100 * n + 10 },
];

function snapshot(worker: number, pools: PoolRow[], current: number): WorkerSnapshot {
  return {
    worker,
    pid: 1000 + worker,
    pools,
    databases: [{ name: 'app', host: 'db', port: 5432, database: 'app', force_user: null, pool_size: 20, min_pool_size: 0, reserve_pool: 0, pool_mode: null, max_connections: 0, current_connections: current, server_lifetime: 3600, load_balance_hosts: null, max_client_connections: 0, current_client_connections: 2 }],
    clients: [client(worker, 1), client(worker, 2)],
    servers: [],
    users: worker === 1 ? [user('u', 2, 2)] : [user('u', 1, 1), user('v', 3, 1)],
    listeners: [{ worker, fd: 3, addr: '0.0.0.0', port: 6432 }],
    memory: memory(worker),
    connections: 3,
    limits: { max_client_conn: 100, max_user_connections: 0 },
  };
}

describe('mergeSnapshots', () => {
  const merged = mergeSnapshots([snapshot(2, [pool('app', 'u', 1, 500), pool('app', 'v', 7)], 4), snapshot(1, [pool('app', 'u', 2, 300)], 5)]);

  it('sums a pool that several workers have, and keeps the longest wait', () => {
    const u = merged.pools.find((p) => p.user === 'u')!;
    expect(u).toMatchObject({ cl_active: 3, cl_waiting: 5, cl_active_cancel_req: 3, cl_waiting_cancel_req: 2, sv_active: 7, sv_active_cancel: 3, sv_being_canceled: 2, sv_idle: 9, sv_used: 2, sv_login: 2, maxwait_us: 500 });
    expect(u.totals).toEqual(counters(3));
    expect(u.last_period).toEqual(counters(2));
  });

  it('keeps a pool only one worker has as it is, sorted by database and user', () => {
    expect(merged.pools.map((p) => p.user)).toEqual(['u', 'v']);
    expect(merged.pools[1]).toMatchObject({ cl_active: 7, maxwait_us: 0 });
  });

  it('sums SHOW STATS per database across pools and workers', () => {
    expect(merged.stats).toEqual([{ database: 'app', totals: counters(10), last_period: counters(3) }]);
  });

  it('sums server connections per database, lists every client, and counts the lists', () => {
    expect(merged.databases).toHaveLength(1);
    expect(merged.databases[0]!.current_connections).toBe(9);
    expect(merged.databases[0]!.current_client_connections).toBe(4);
    expect(merged.clients.map((c) => `${c.worker}:${c.id}`)).toEqual(['2:1', '2:2', '1:1', '1:2']);
    expect(merged.lists).toEqual({ databases: 1, users: 2, pools: 2, used_clients: 6, login_clients: 2, used_servers: 3 });
    expect(merged.limits).toEqual({ max_client_conn: 100, max_user_connections: 0 }); // one budget for all workers: not summed
    expect(merged.workers).toEqual([1, 2]);
  });

  it('sums each user’s server and client connections, and keeps its limits', () => {
    expect(merged.users).toEqual([user('u', 3, 3), user('v', 3, 1)]);
  });

  it('sums SHOW MEM by name: counts and bytes of the whole instance, an unknown total stays unknown', () => {
    expect(merged.memory).toEqual([
      { name: 'client_cache', size: null, used: 3, free: 0, memtotal: null },
      { name: 'v8_heap', size: 1, used: 300, free: 20, memtotal: 320 },
    ]);
  });

  it('lists every worker’s listening sockets', () => {
    expect(merged.listeners.map((l) => l.worker)).toEqual([2, 1]);
  });

  it('does not change the snapshots it merges', () => {
    const a = snapshot(1, [pool('app', 'u', 1)], 1);
    mergeSnapshots([a, snapshot(2, [pool('app', 'u', 1)], 1)]);
    expect(a.pools[0]!.cl_active).toBe(1);
    expect(a.pools[0]!.totals).toEqual(counters(1));
  });

  it('of nothing is empty', () => {
    const none = mergeSnapshots([]);
    expect(none.pools).toEqual([]);
    expect(none.workers).toEqual([]);
    expect(none.lists.used_clients).toBe(0);
  });
});

describe('PoolCounters', () => {
  it('reports times in microseconds and the last period as a difference', () => {
    const c = new PoolCounters();
    c.queryCount = 3;
    c.queryTimeMs = 1.5;
    c.bytesReceived = 10;
    expect(c.values()).toMatchObject({ query_count: 3, query_time: 1500, received: 10 });
    c.rollPeriod();
    expect(c.lastPeriod).toMatchObject({ query_count: 3, query_time: 1500 });
    c.queryCount = 5;
    c.rollPeriod();
    expect(c.lastPeriod).toEqual({ ...zeroCounters(), query_count: 2 });
  });
});
