// /metrics, /healthz and /readyz of an in-process proxy, driven by real clients.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../../src/proxy.js';
import { listeningCount, startCliProxy } from '../harness/cli.js';
import { freePort, USERS } from '../harness/postgres.js';
import { until } from '../harness/poll.js';
import { LogCapture, pgOptions, startTestProxy, withClient } from '../harness/proxy.js';

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
        const pool = '{database="app2",user="app_scram"}';
        // Poll the scrape itself until the waiter shows, and has waited a little (maxwait is what is checked).
        let text = '';
        await until('the waiting client in /metrics, waiting 0.2 s or more', async () => {
          text = await scrape();
          return value(text, `pgbouncer_pools_client_waiting_connections${pool}`) === 1 && (value(text, `pgbouncer_pools_client_maxwait_seconds${pool}`) ?? 0) >= 0.2;
        });
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

describe('bearer token from the configuration', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pg-ingress-metrics-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const token = 'k8s-secret-token-9c1e0b';

  it('metrics_auth_token_file protects /metrics of a real proxy; probes stay open; the token is never logged or shown', async () => {
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, `${token}\n`); // as a mounted Secret written with echo
    const logs = new LogCapture();
    proxy = await startTestProxy(
      { metrics_port: 0, metrics_listen_addr: '127.0.0.1', metrics_auth_token_file: tokenFile, admin_users: [scram.name], auth_dbname: 'app1' },
      {},
      logs,
    );
    const base = `http://127.0.0.1:${proxy.metricsPort}`;
    // A client's work, so the scrape has a pool to show.
    await withClient(pgOptions(proxy.port, 'app1', scram.name, scram.password), (c) => c.query('SELECT 1'));

    const anonymous = await fetch(`${base}/metrics`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Bearer /);
    expect((await fetch(`${base}/metrics`, { headers: { authorization: 'Bearer not-it' } })).status).toBe(401);

    const scraped = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    expect(scraped.status).toBe(200);
    const text = await scraped.text();
    expect(value(text, 'pgbouncer_up')).toBe(1);
    expect(value(text, 'pgbouncer_stats_queries_pooled_total{database="app1"}')).toBeGreaterThanOrEqual(1);

    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);

    const shown = await withClient(pgOptions(proxy.port, 'pgbouncer', scram.name, scram.password), (c) => c.query('SHOW CONFIG'));
    const keys = (shown.rows as Array<{ key: string }>).map((r) => r.key);
    expect(keys).toContain('metrics_port');
    expect(keys).not.toContain('metrics_auth_token');
    expect(JSON.stringify(shown.rows)).not.toContain(token);
    expect(logs.text).toContain('metrics endpoint listening');
    expect(logs.text).not.toContain(token);
  });
});

describe('bearer token with workers', () => {
  it('the primary serves /metrics with the token the workers were configured with', async () => {
    const token = 'workers-token-51d2';
    const metricsPort = await freePort();
    const cli = await startCliProxy({
      yaml: (dir) => {
        writeFileSync(join(dir, 'metrics-token'), `${token}\n`);
        return ['metrics_listen_addr: 127.0.0.1', `metrics_port: ${metricsPort}`, `metrics_auth_token_file: ${join(dir, 'metrics-token')}`, 'workers: 2'];
      },
      env: { PG_INGRESS_AUTH_PASSWORD: USERS.auth.password },
      ready: (out) => listeningCount(out) === 2 && out.includes('metrics endpoint listening'),
    });
    try {
      expect(cli.output()).toContain('metrics endpoint listening');
      const base = `http://127.0.0.1:${metricsPort}`;
      expect((await fetch(`${base}/metrics`)).status).toBe(401);
      const scraped = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } });
      expect(scraped.status).toBe(200);
      expect(value(await scraped.text(), 'pg_ingress_workers_scraped')).toBe(2);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      expect(cli.output()).not.toContain(token);
    } finally {
      await cli.stop();
    }
  });
});
