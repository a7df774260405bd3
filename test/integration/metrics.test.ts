// /metrics, /healthz and /readyz of an in-process proxy, driven by real clients.
import { afterEach, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../../src/proxy.js';
import { USERS } from '../harness/postgres.js';
import { pgOptions, startTestProxy, withClient } from '../harness/proxy.js';

let proxy: RunningProxy | null = null;
afterEach(async () => {
  await proxy?.close();
  proxy = null;
});

const scram = USERS.scram;

async function scrape(): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${proxy!.metricsPort}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

/** The value of one series, e.g. metric('pgbouncer_pools_client_active_connections{database="app1",user="app_scram"}'). */
function value(text: string, series: string): number | null {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? null : Number(line.slice(series.length + 1));
}

describe('metrics endpoint of a single-process proxy', () => {
  it('counts pools, queries, transactions and bytes as pgbouncer_exporter names them', async () => {
    proxy = await startTestProxy({ metrics_port: 0, metrics_listen_addr: '127.0.0.1', pool_mode: 'transaction' });
    const pool = '{database="app1",user="app_scram"}';
    await withClient(pgOptions(proxy.port, 'app1', scram.name, scram.password), async (c) => {
      for (let i = 0; i < 5; i++) await c.query('SELECT 1');
      await c.query('BEGIN');
      await c.query('SELECT 2');
      await c.query('SELECT pg_sleep(0.05)');
      await c.query('COMMIT');
      const text = await scrape();
      expect(value(text, `pgbouncer_pools_client_active_connections${pool}`)).toBe(1);
      expect(value(text, `pgbouncer_pools_client_waiting_connections${pool}`)).toBe(0);
      expect(value(text, `pgbouncer_pools_server_idle_connections${pool}`)).toBe(1);
      expect(value(text, `pgbouncer_pools_server_active_connections${pool}`)).toBe(0);
      // 5 autocommit queries + BEGIN, SELECT, SELECT, COMMIT; 6 transactions.
      expect(value(text, 'pgbouncer_stats_queries_pooled_total{database="app1"}')).toBe(9);
      expect(value(text, 'pgbouncer_stats_totals_queries_pooled_total{database="app1"}')).toBe(9);
      expect(value(text, 'pgbouncer_stats_sql_transactions_pooled_total{database="app1"}')).toBe(6);
      expect(value(text, 'pgbouncer_stats_server_in_transaction_seconds_total{database="app1"}')).toBeGreaterThanOrEqual(0.05);
      expect(value(text, 'pgbouncer_stats_queries_duration_seconds_total{database="app1"}')).toBeGreaterThanOrEqual(0.05);
      expect(value(text, 'pgbouncer_stats_received_bytes_total{database="app1"}')).toBeGreaterThan(9 * 10);
      expect(value(text, 'pgbouncer_stats_sent_bytes_total{database="app1"}')).toBeGreaterThan(9 * 10);
      // A server per autocommit query, one for the whole transaction.
      expect(value(text, 'pgbouncer_stats_server_assignments_total{database="app1"}')).toBe(6);
      expect(value(text, 'pgbouncer_up')).toBe(1);
      expect(value(text, 'pgbouncer_used_clients')).toBe(1);
      expect(value(text, 'pgbouncer_databases_current_connections{name="app1",database="app1"}')).toBe(1);
      expect(text).not.toContain(scram.password);
      expect(text).not.toContain(USERS.auth.password);
    });
    // The client left: its pool stays, with no client.
    const after = await scrape();
    expect(value(after, `pgbouncer_pools_client_active_connections${pool}`)).toBe(0);
  });

  it('shows a client waiting for a server, and how long it has waited', async () => {
    proxy = await startTestProxy({ metrics_port: 0, metrics_listen_addr: '127.0.0.1', pool_mode: 'transaction', default_pool_size: 1 });
    const opts = pgOptions(proxy.port, 'app2', scram.name, scram.password);
    // Both log in first: a login needs the server too.
    await withClient(opts, async (holder) => {
      await withClient(opts, async (waiter) => {
        await holder.query('BEGIN'); // holds the only server
        const q = waiter.query('SELECT 1');
        await new Promise((r) => setTimeout(r, 300));
        const text = await scrape();
        const pool = '{database="app2",user="app_scram"}';
        expect(value(text, `pgbouncer_pools_client_waiting_connections${pool}`)).toBe(1);
        expect(value(text, `pgbouncer_pools_client_active_connections${pool}`)).toBe(1);
        expect(value(text, `pgbouncer_pools_server_active_connections${pool}`)).toBe(1);
        expect(value(text, `pgbouncer_pools_client_maxwait_seconds${pool}`)).toBeGreaterThanOrEqual(0.2);
        await holder.query('COMMIT');
        await q;
        const later = await scrape();
        expect(value(later, 'pgbouncer_stats_client_wait_seconds_total{database="app2"}')).toBeGreaterThanOrEqual(0.2);
      });
    });
  });

  it('answers /healthz and /readyz while serving', async () => {
    proxy = await startTestProxy({ metrics_port: 0, metrics_listen_addr: '127.0.0.1' });
    const base = `http://127.0.0.1:${proxy.metricsPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
  });

  it('serves no endpoint when metrics_port is off', async () => {
    proxy = await startTestProxy({ metrics_port: 'off' });
    expect(proxy.metricsPort).toBeNull();
  });
});
