// With `workers: 2` (the real CLI, as a child process), one scrape of the
// primary's /metrics, and one SHOW POOLS on the admin console, add up both workers.
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { listeningCount, startCliProxy, type CliProxy } from '../harness/cli.js';
import { freePort, USERS } from '../harness/postgres.js';
import { conninfo, pgOptions, psql } from '../harness/proxy.js';
import { WORKER_SEMI_SPACE_MB } from '../../src/workers/node-flags.js';

const scram = USERS.scram;

let proxy: CliProxy | undefined;
let port = 0;
let metricsPort = 0;
const clients: pg.Client[] = [];

beforeAll(async () => {
  metricsPort = await freePort();
  proxy = await startCliProxy({
    yaml: () => ['metrics_listen_addr: 127.0.0.1', `metrics_port: ${metricsPort}`, 'workers: 2', 'pool_mode: transaction', `admin_users: ${scram.name}`, 'auth_dbname: postgres'],
    env: { PG_INGRESS_AUTH_PASSWORD: USERS.auth.password },
    ready: (out) => listeningCount(out) === 2 && out.includes('metrics endpoint listening'),
  });
  port = proxy.port;
  expect(listeningCount(proxy.output())).toBe(2);
  // Connect until both workers hold clients (the kernel spreads connections between them).
  const perWorker = new Map<number, number>();
  for (let i = 0; i < 40 && (perWorker.size < 2 || clients.length < 4); i++) {
    const c = new pg.Client(pgOptions(port, 'app1', scram.name, scram.password));
    await c.connect();
    await c.query('SELECT 1');
    clients.push(c);
    const worker = (c as unknown as { processID: number }).processID >>> 24;
    perWorker.set(worker, (perWorker.get(worker) ?? 0) + 1);
  }
  expect([...perWorker.keys()].sort()).toEqual([1, 2]);
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  await proxy?.stop();
});

function value(text: string, series: string): number | null {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? null : Number(line.slice(series.length + 1));
}

describe('two workers', () => {
  it('one scrape of the primary sums the pools and counters of both workers', async () => {
    const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(value(text, 'pg_ingress_workers_scraped')).toBe(2);
    expect(value(text, 'pgbouncer_up')).toBe(1);
    expect(value(text, 'pgbouncer_pools_client_active_connections{database="app1",user="app_scram"}')).toBe(clients.length);
    // Each client ran one SELECT 1 (its login's own lookups are not client queries).
    expect(value(text, 'pgbouncer_stats_queries_pooled_total{database="app1"}')).toBe(clients.length);
    expect(value(text, 'pgbouncer_used_clients')).toBe(clients.length);
    expect(value(text, 'pgbouncer_config_max_client_connections')).toBe(100); // one budget for both workers, not 2 × 100
    expect(text).not.toContain(USERS.auth.password);
  });

  it('SHOW POOLS and SHOW CLIENTS on the admin console, whichever worker serves it, cover both workers', async () => {
    // Several console sessions: the kernel hands them to both workers.
    for (let i = 0; i < 4; i++) {
      const r = await psql(conninfo(port, 'pgbouncer', scram.name), 'SHOW POOLS', { PGPASSWORD: scram.password });
      expect(r.stderr).toBe('');
      const row = r.stdout.split('\n').find((l) => l.startsWith('app1|app_scram|'))!.split('|');
      expect(Number(row[2])).toBe(clients.length); // cl_active
      expect(Number(row[6]) + Number(row[9])).toBeGreaterThanOrEqual(2); // sv_active + sv_idle: each worker has its own server
    }
    const r = await psql(conninfo(port, 'pgbouncer', scram.name), 'SHOW CLIENTS', { PGPASSWORD: scram.password });
    const ptrs = r.stdout.split('\n').filter((l) => l.startsWith('C|')).map((l) => l.split('|')[14]!); // ptr, after PgBouncer 1.25's replication column
    expect(ptrs).toHaveLength(clients.length);
    expect(new Set(ptrs.map((p) => p.split('-')[1])).size).toBe(2); // rows from both workers
    expect(new Set(ptrs).size).toBe(ptrs.length);
  });

  it('runs its workers with the capped V8 semi-space that keeps idle clients cheap', () => {
    const workers = readdirSync('/proc')
      .filter((name) => /^\d+$/.test(name))
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1] === String(proxy!.child.pid);
        } catch {
          return false; // gone meanwhile
        }
      });
    expect(workers).toHaveLength(2);
    for (const pid of workers) expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toContain(`--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`);
  });

  it('the primary answers /healthz and /readyz', async () => {
    expect((await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status).toBe(200);
  });
});

describe('two workers: SHOW USERS, TOTALS, MEM and FDS', () => {
  const show = async (what: string): Promise<{ rows: string[][]; stderr: string }> => {
    const r = await psql(conninfo(port, 'pgbouncer', scram.name), `SHOW ${what}`, { PGPASSWORD: scram.password });
    expect(r.code).toBe(0);
    return { rows: r.stdout.split('\n').map((l) => l.split('|')), stderr: r.stderr };
  };

  it('USERS and TOTALS add up both workers', async () => {
    const user = (await show('USERS')).rows.find((r) => r[0] === scram.name)!;
    expect(Number(user[7])).toBe(clients.length); // current_client_connections
    const totals = (await show('TOTALS')).rows;
    expect(Number(totals.find((r) => r[0] === 'total_query_count')![1])).toBe(clients.length); // one SELECT 1 each
  });

  it('MEM sums the workers: clients of both, and the RSS of both worker processes', async () => {
    const mem = (await show('MEM')).rows;
    expect(Number(mem.find((r) => r[0] === 'client_cache')![2])).toBe(clients.length);
    const workerRss = readdirSync('/proc')
      .filter((name) => /^\d+$/.test(name))
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1] === String(proxy!.child.pid);
        } catch {
          return false;
        }
      })
      .reduce((sum, pid) => sum + Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024, 0);
    const rss = Number(mem.find((r) => r[0] === 'process_rss')![2]);
    expect(rss / workerRss).toBeGreaterThan(0.7);
    expect(rss / workerRss).toBeLessThan(1.4);
  });

  it('FDS lists the client sockets of both workers and says fds are per process', async () => {
    const fds = await show('FDS');
    expect(fds.rows.filter((r) => r[1] === 'client')).toHaveLength(clients.length);
    expect(fds.stderr).toContain('per worker process');
  });
});
