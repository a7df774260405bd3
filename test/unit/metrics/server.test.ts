// The operations endpoint over real HTTP: exporter-compatible /metrics,
// /healthz, and /readyz that turns 503 when a shutdown begins; and what a
// stranger on the port cannot do: stall it, pile up collections, or read
// /metrics without the token.
import net from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../../src/log/logger.js';
import { MetricsServer, type MetricsServerOptions } from '../../../src/metrics/server.js';
import type { Worker } from 'node:cluster';
import { PrimaryCollector, SNAPSHOT_TIMEOUT_MS, type StatsCollector } from '../../../src/stats/collector.js';
import { mergeSnapshots, type ClusterStats } from '../../../src/stats/merge.js';
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

const empty: StatsCollector = { collect: async () => mergeSnapshots([]) };
function start(opts: Partial<MetricsServerOptions> = {}): Promise<MetricsServer> {
  return MetricsServer.start({ host: '127.0.0.1', port: 0, authToken: null, collector: empty, ready: () => true, log, ...opts });
}

/** A collector whose collections finish only when the test says so. */
function manualCollector(): StatsCollector & { calls: number; finish(stats: ClusterStats): void } {
  const waiting: Array<(stats: ClusterStats) => void> = [];
  return {
    calls: 0,
    collect() {
      this.calls++;
      return new Promise<ClusterStats>((resolve) => waiting.push(resolve));
    },
    finish(stats) {
      for (const resolve of waiting.splice(0)) resolve(stats);
    },
  };
}

/** A raw TCP client; `closed` settles when the server closes it, with what it sent and when. */
function rawClient(port: number): { socket: net.Socket; closed: Promise<{ data: string; at: number }> } {
  const socket = net.connect(port, '127.0.0.1');
  let data = '';
  socket.on('data', (chunk: Buffer) => (data += chunk.toString('latin1')));
  socket.on('error', () => {}); // a reset counts as closed
  return { socket, closed: new Promise((resolve) => socket.once('close', () => resolve({ data, at: performance.now() }))) };
}

describe('metrics endpoint', () => {
  it('serves merged statistics under pgbouncer_exporter names', async () => {
    const stats = mergeSnapshots([snapshot(1, 2), snapshot(2, 3)]);
    server = await start({ collector: { collect: async () => stats } });
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
    expect(text).toContain('pgbouncer_config_max_client_connections 100'); // the proxy's limit, not a sum over workers
    expect(text).toContain('pg_ingress_workers_scraped 2');
    expect(text).toMatch(/pgbouncer_version_info\{version="[^"]+"\} 1/);
    // Labels are database and user names only: no host names.
    expect(text).not.toContain('db.internal');
  });

  it('drops series of pools that are gone on the next scrape', async () => {
    let stats = mergeSnapshots([snapshot(1, 2)]);
    server = await start({ collector: { collect: async () => stats } });
    expect(await (await fetch(url('/metrics'))).text()).toContain('user="alice"');
    stats = mergeSnapshots([]);
    const text = await (await fetch(url('/metrics'))).text();
    expect(text).not.toContain('user="alice"');
    expect(text).toContain('pgbouncer_up 0');
  });

  it('says pgbouncer_up 0 when collecting fails, instead of failing the scrape', async () => {
    server = await start({ collector: { collect: () => Promise.reject(new Error('boom')) } });
    const res = await fetch(url('/metrics'));
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('pgbouncer_up 0');
  });

  it('answers /healthz always and /readyz only while ready', async () => {
    let ready = true;
    server = await start({ ready: () => ready });
    expect((await fetch(url('/healthz'))).status).toBe(200);
    expect((await fetch(url('/readyz'))).status).toBe(200);
    ready = false; // SIGTERM: draining
    expect((await fetch(url('/readyz'))).status).toBe(503);
    expect((await fetch(url('/healthz'))).status).toBe(200);
    expect((await fetch(url('/nope'))).status).toBe(404);
    expect((await fetch(url('/metrics'), { method: 'POST' })).status).toBe(405);
  });

  it('fails to start on a port in use, with the error to log', async () => {
    server = await start();
    await expect(start({ port: server.port })).rejects.toThrow(/EADDRINUSE/);
  });
});

describe('scrapes share one collection', () => {
  it('answers a burst of concurrent scrapes from a single collect()', async () => {
    const collector = manualCollector();
    server = await start({ collector });
    const burst = Array.from({ length: 20 }, () => fetch(url('/metrics')));
    // Every request has reached the server and waits on the one collection.
    await vi.waitFor(() => expect(server!.scrapesWaiting).toBe(20), { timeout: 5000, interval: 10 });
    expect(collector.calls).toBe(1);
    collector.finish(mergeSnapshots([snapshot(1, 2)]));
    const texts = await Promise.all(burst.map(async (r) => (await r).text()));
    expect(collector.calls).toBe(1);
    for (const text of texts) expect(text).toContain('pgbouncer_pools_client_active_connections{database="app",user="alice"} 2');
    // Once answered, the next scrape collects afresh.
    const next = fetch(url('/metrics'));
    await vi.waitFor(() => expect(collector.calls).toBe(2), { timeout: 5000, interval: 10 });
    collector.finish(mergeSnapshots([snapshot(1, 3)]));
    expect(await (await next).text()).toContain('user="alice"} 3');
  });

  it('answers within the scrape deadline when collecting hangs, and never starts a second collection meanwhile', async () => {
    const collector = manualCollector(); // never finished
    server = await start({ collector, limits: { scrapeDeadlineMs: 200 } });
    const began = performance.now();
    const res = await fetch(url('/metrics'));
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('pgbouncer_up 0');
    expect(performance.now() - began).toBeLessThan(2000);
    expect(await (await fetch(url('/metrics'))).text()).toContain('pgbouncer_up 0');
    expect(collector.calls).toBe(1);
    // When the hung collection finally ends, the next scrape collects again.
    collector.finish(mergeSnapshots([snapshot(1, 2)]));
    const text = await (await fetch(url('/metrics'))).text();
    expect(collector.calls).toBe(2);
    expect(text).toContain('pgbouncer_up 0'); // that one hangs too
  });
});

describe('a worker that never answers', () => {
  it("the primary's scrape leaves it out after the snapshot timeout instead of hanging", async () => {
    // A worker that is connected and takes the request, then never replies.
    const silent = { isConnected: () => true, send: () => true } as unknown as Worker;
    server = await start({ collector: new PrimaryCollector(() => [silent]) });
    const began = performance.now();
    const res = await fetch(url('/metrics'));
    const took = performance.now() - began;
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain('pgbouncer_up 0');
    expect(text).toContain('pg_ingress_workers_scraped 0');
    expect(took).toBeGreaterThanOrEqual(SNAPSHOT_TIMEOUT_MS - 50);
    expect(took).toBeLessThan(SNAPSHOT_TIMEOUT_MS + 1500);
  });
});

describe('slow and hung HTTP clients', () => {
  const slow = { headersTimeoutMs: 300, requestTimeoutMs: 300, idleTimeoutMs: 60_000 };

  it('closes a request that sends half its headers and stalls, within headersTimeout', async () => {
    server = await start({ limits: slow });
    const client = rawClient(server.port);
    const began = performance.now();
    client.socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
    const { data, at } = await client.closed;
    expect(data).toMatch(/^HTTP\/1\.1 408/);
    expect(at - began).toBeGreaterThanOrEqual(250);
    expect(at - began).toBeLessThan(2000);
  });

  it('closes a slowloris that keeps dribbling header lines, which an idle timeout alone would not', async () => {
    server = await start({ limits: slow });
    const client = rawClient(server.port);
    const began = performance.now();
    client.socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
    const drip = setInterval(() => client.socket.writable && client.socket.write('X-Drip: 1\r\n'), 50);
    try {
      const { at } = await client.closed;
      expect(at - began).toBeLessThan(2000);
    } finally {
      clearInterval(drip);
    }
  });

  it('closes a connection that sends nothing, after the idle timeout', async () => {
    server = await start({ limits: { idleTimeoutMs: 300 } });
    const client = rawClient(server.port);
    const began = performance.now();
    const { at } = await client.closed;
    expect(at - began).toBeGreaterThanOrEqual(250);
    expect(at - began).toBeLessThan(2000);
  });

  it('caps connections: beyond maxConnections, half-sent requests are closed on accept', async () => {
    server = await start({ limits: { maxConnections: 5, headersTimeoutMs: 60_000, requestTimeoutMs: 60_000 } });
    const clients = Array.from({ length: 50 }, () => rawClient(server!.port));
    for (const c of clients) c.socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
    let closed = 0;
    for (const c of clients) void c.closed.then(() => closed++);
    await vi.waitFor(() => expect(closed).toBe(45), { timeout: 5000, interval: 10 });
    for (const c of clients) c.socket.destroy();
    // The held slots are freed as soon as their holders go.
    await vi.waitFor(async () => expect((await fetch(url('/healthz'))).status).toBe(200), { timeout: 5000, interval: 20 });
  });

  it('answers a request with a body and closes instead of reading it', async () => {
    server = await start();
    const client = rawClient(server.port);
    client.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\npartial body');
    const { data } = await client.closed;
    expect(data).toMatch(/^HTTP\/1\.1 200/);
    expect(data.toLowerCase()).toContain('connection: close');
  });
});

describe('bearer token on /metrics', () => {
  const token = 'tok-3f9a_Zq.~+/=';

  it('refuses /metrics without the token or with a wrong one, with WWW-Authenticate: Bearer', async () => {
    const collector = manualCollector();
    server = await start({ authToken: token, collector });
    for (const authorization of [undefined, 'Bearer wrong', `Bearer ${token}x`, `Bearer ${token.slice(0, -1)}`, `Basic ${Buffer.from(`u:${token}`).toString('base64')}`, token, 'Bearer ']) {
      const res = await fetch(url('/metrics'), { headers: authorization === undefined ? {} : { authorization } });
      expect(res.status, String(authorization)).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer /);
      expect(await res.text()).not.toContain(token);
    }
    expect(collector.calls).toBe(0); // a stranger cannot even make it collect
  });

  it('serves /metrics with the right token, whatever the scheme\'s case', async () => {
    server = await start({ authToken: token });
    for (const authorization of [`Bearer ${token}`, `bearer ${token}`, `BEARER  ${token}`]) {
      const res = await fetch(url('/metrics'), { headers: { authorization } });
      expect(res.status, authorization).toBe(200);
      expect(await res.text()).toContain('pgbouncer_up');
    }
  });

  it('leaves /healthz and /readyz open: kubelet probes send no token', async () => {
    server = await start({ authToken: token });
    expect((await fetch(url('/healthz'))).status).toBe(200);
    expect((await fetch(url('/readyz'))).status).toBe(200);
  });
});
