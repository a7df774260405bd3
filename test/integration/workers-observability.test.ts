// With `workers: 2` (the real CLI, as a child process), one scrape of the
// primary's /metrics, and one SHOW POOLS on the admin console, add up both workers.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { freePort, USERS } from '../harness/postgres.js';
import { conninfo, pgOptions, psql, testEnv } from '../harness/proxy.js';

const BIN = join(process.cwd(), 'bin', 'pg-ingress.js');
const scram = USERS.scram;

let child: ChildProcess;
let out = '';
let port = 0;
let metricsPort = 0;
const clients: pg.Client[] = [];

beforeAll(async () => {
  const { cluster, certFile, keyFile } = testEnv();
  const dir = mkdtempSync(join(tmpdir(), 'pg-ingress-workers-'));
  port = await freePort();
  metricsPort = await freePort();
  writeFileSync(
    join(dir, 'pg-ingress.yaml'),
    [
      'listen_addr: 127.0.0.1',
      `listen_port: ${port}`,
      'metrics_listen_addr: 127.0.0.1',
      `metrics_port: ${metricsPort}`,
      'workers: 2',
      'pool_mode: transaction',
      `admin_users: ${scram.name}`,
      'auth_dbname: postgres',
      `client_tls_cert_file: ${certFile}`,
      `client_tls_key_file: ${keyFile}`,
      'databases:',
      `  "*": host=${cluster.host} port=${cluster.port}`,
    ].join('\n'),
  );
  child = spawn(process.execPath, [BIN, '--config', join(dir, 'pg-ingress.yaml')], {
    env: { PATH: process.env.PATH, PG_INGRESS_LOG_LEVEL: 'info', PG_INGRESS_AUTH_PASSWORD: USERS.auth.password },
  });
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 100 && !((out.match(/pg-ingress listening/g) ?? []).length === 2 && out.includes('metrics endpoint listening')); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  expect((out.match(/pg-ingress listening/g) ?? []).length).toBe(2);
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
  child?.kill('SIGTERM');
  if (child && child.exitCode === null) await new Promise((resolve) => child.on('exit', resolve));
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
    expect(value(text, 'pgbouncer_config_max_client_connections')).toBe(200);
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
    const ptrs = r.stdout.split('\n').filter((l) => l.startsWith('C|')).map((l) => l.split('|')[13]!);
    expect(ptrs).toHaveLength(clients.length);
    expect(new Set(ptrs.map((p) => p.split('-')[1])).size).toBe(2); // rows from both workers
    expect(new Set(ptrs).size).toBe(ptrs.length);
  });

  it('the primary answers /healthz and /readyz', async () => {
    expect((await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status).toBe(200);
  });
});
