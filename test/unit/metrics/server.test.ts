// The operations endpoint over real HTTP: exporter-compatible /metrics,
// /healthz, and /readyz that turns 503 when a shutdown begins.
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/log/logger.js';
import { MetricsServer } from '../../../src/metrics/server.js';
import { mergeSnapshots } from '../../../src/stats/merge.js';
import type { WorkerSnapshot } from '../../../src/stats/snapshot.js';

const log = createLogger('silent');
let server: MetricsServer | null = null;
afterEach(async () => {
  await server?.close();
  server = null;
});

function snapshot(worker: number, active: number): WorkerSnapshot {
  const totals = { xact_count: 4, query_count: 6, server_assignment_count: 4, received: 120, sent: 900, xact_time: 2_000_000, query_time: 1_500_000, wait_time: 250_000 };
  return {
    worker,
    pid: worker,
    pools: [{ database: 'app', user: 'alice', pool_mode: 'transaction', pool_size: 20, cl_active: active, cl_waiting: 1, cl_active_cancel_req: 0, cl_waiting_cancel_req: 0, sv_active_cancel: 0, sv_being_canceled: 0, sv_active: 1, sv_idle: 2, sv_used: 0, sv_tested: 0, sv_login: 0, maxwait_us: 1_500_000, totals, last_period: totals }],
    databases: [{ name: 'app', host: 'db.internal', port: 5432, database: 'app_prod', force_user: null, pool_size: 20, min_pool_size: 0, reserve_pool: 0, pool_mode: null, max_connections: 0, current_connections: 3 }],
    clients: [],
    servers: [],
    connections: active,
    limits: { max_client_conn: 100, max_user_connections: 0 },
  };
}

const url = (path: string): string => `http://127.0.0.1:${server!.port}${path}`;

describe('metrics endpoint', () => {
  it('serves merged statistics under pgbouncer_exporter names', async () => {
    const stats = mergeSnapshots([snapshot(1, 2), snapshot(2, 3)]);
    server = await MetricsServer.start({ host: '127.0.0.1', port: 0, collector: { collect: async () => stats }, ready: () => true, log });
    const res = await fetch(url('/metrics'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    expect(text).toContain('pgbouncer_up 1');
    expect(text).toContain('pgbouncer_pools_client_active_connections{database="app",user="alice"} 5');
    expect(text).toContain('pgbouncer_pools_server_idle_connections{database="app",user="alice"} 4');
    expect(text).toContain('pgbouncer_pools_client_maxwait_seconds{database="app",user="alice"} 1.5');
    expect(text).toContain('pgbouncer_stats_queries_pooled_total{database="app"} 12');
    expect(text).toContain('pgbouncer_stats_totals_queries_pooled_total{database="app"} 12');
    expect(text).toContain('pgbouncer_stats_received_bytes_total{database="app"} 240');
    expect(text).toContain('pgbouncer_stats_queries_duration_seconds_total{database="app"} 3');
    expect(text).toContain('pgbouncer_stats_client_wait_seconds_total{database="app"} 0.5');
    expect(text).toMatch(/# TYPE pgbouncer_stats_sql_transactions_pooled_total counter/);
    expect(text).toContain('pgbouncer_databases_current_connections{name="app",database="app_prod"} 6');
    expect(text).toContain('pgbouncer_config_max_client_connections 200');
    expect(text).toContain('pg_ingress_workers_scraped 2');
    expect(text).toMatch(/pgbouncer_version_info\{version="[^"]+"\} 1/);
    // Labels are database and user names only: no host names.
    expect(text).not.toContain('db.internal');
  });

  it('drops series of pools that are gone on the next scrape', async () => {
    let stats = mergeSnapshots([snapshot(1, 2)]);
    server = await MetricsServer.start({ host: '127.0.0.1', port: 0, collector: { collect: async () => stats }, ready: () => true, log });
    expect(await (await fetch(url('/metrics'))).text()).toContain('user="alice"');
    stats = mergeSnapshots([]);
    const text = await (await fetch(url('/metrics'))).text();
    expect(text).not.toContain('user="alice"');
    expect(text).toContain('pgbouncer_up 0');
  });

  it('says pgbouncer_up 0 when collecting fails, instead of failing the scrape', async () => {
    server = await MetricsServer.start({ host: '127.0.0.1', port: 0, collector: { collect: () => Promise.reject(new Error('boom')) }, ready: () => true, log });
    const res = await fetch(url('/metrics'));
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('pgbouncer_up 0');
  });

  it('answers /healthz always and /readyz only while ready', async () => {
    let ready = true;
    server = await MetricsServer.start({ host: '127.0.0.1', port: 0, collector: { collect: async () => mergeSnapshots([]) }, ready: () => ready, log });
    expect((await fetch(url('/healthz'))).status).toBe(200);
    expect((await fetch(url('/readyz'))).status).toBe(200);
    ready = false; // SIGTERM: draining
    expect((await fetch(url('/readyz'))).status).toBe(503);
    expect((await fetch(url('/healthz'))).status).toBe(200);
    expect((await fetch(url('/nope'))).status).toBe(404);
    expect((await fetch(url('/metrics'), { method: 'POST' })).status).toBe(405);
  });

  it('fails to start on a port in use, with the error to log', async () => {
    server = await MetricsServer.start({ host: '127.0.0.1', port: 0, collector: { collect: async () => mergeSnapshots([]) }, ready: () => true, log });
    await expect(MetricsServer.start({ host: '127.0.0.1', port: server.port, collector: { collect: async () => mergeSnapshots([]) }, ready: () => true, log })).rejects.toThrow(/EADDRINUSE/);
  });
});
