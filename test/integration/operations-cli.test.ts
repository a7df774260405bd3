// The operator's signals on the real CLI, one process and with workers:
// SIGHUP reloads the file (all workers switch; a broken file changes nothing),
// SIGUSR1/SIGUSR2 pause and resume, SIGINT waits for servers, SIGQUIT stops at
// once, the console's SHUTDOWN stops the whole proxy, and the primary kills a
// worker that outlasts shutdown_timeout and exits 1.
import { readFileSync, writeFileSync } from 'node:fs';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { listeningCount, startCliProxy, type CliProxy } from '../harness/cli.js';
import { until } from '../harness/poll.js';
import { adminSql, USERS } from '../harness/postgres.js';
import { conninfo, pgOptions, psql, testEnv, withClient } from '../harness/proxy.js';

const scram = USERS.scram;
const [A, B] = ['ops_cli_a', 'ops_cli_b'];

beforeAll(async () => {
  const { cluster } = testEnv();
  for (const db of [A, B]) {
    await adminSql(cluster, `CREATE DATABASE ${db}`);
    await adminSql(cluster, `CREATE TABLE whoami (name text); INSERT INTO whoami VALUES ('${db}'); GRANT SELECT ON whoami TO ${scram.name}; CREATE TABLE done (n int); GRANT ALL ON done TO ${scram.name}`, db);
  }
});

function start(workers: number, extra: string[] = []): Promise<CliProxy> {
  const { cluster } = testEnv();
  return startCliProxy({
    yaml: () => [`workers: ${workers}`, 'pool_mode: transaction', 'metrics_port: off', 'auth_dbname: postgres', `admin_users: ${scram.name}`, ...extra],
    databases: [`  ops: host=${cluster.host} port=${cluster.port} dbname=${A}`],
    env: { PG_INGRESS_AUTH_PASSWORD: USERS.auth.password },
    ready: (out) => listeningCount(out) === workers,
    timeoutMs: 30_000,
  });
}

const options = (proxy: CliProxy): pg.ClientConfig => pgOptions(proxy.port, 'ops', scram.name, scram.password);
const whoami = (proxy: CliProxy): Promise<string> => withClient(options(proxy), async (c) => (await c.query('SELECT name FROM whoami')).rows[0].name as string);
function exited(child: import('node:child_process').ChildProcess): Promise<number | null> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve(child.exitCode) : new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}
function rewrite(proxy: CliProxy, from: string, to: string): void {
  const text = readFileSync(proxy.configFile, 'utf8');
  expect(text).toContain(from);
  writeFileSync(proxy.configFile, text.replace(from, to));
}

describe.each([1, 2])('workers: %i', (workers) => {
  it('SIGHUP with a changed dbname: new connections reach the new database; with a broken file the proxy keeps serving and logs why', async () => {
    const proxy = await start(workers);
    try {
      expect(await whoami(proxy)).toBe(A);
      rewrite(proxy, `dbname=${A}`, `dbname=${B}`);
      proxy.child.kill('SIGHUP');
      // Every worker: eight new connections, spread over them, all land on the new database.
      let seen: string[] = [];
      await until('new connections reach the new database', async () => {
        seen = await Promise.all(Array.from({ length: 8 }, () => whoami(proxy)));
        return seen.every((n) => n === B);
      }, { timeoutMs: 15_000 }).catch((err: Error) => {
        throw new Error(`${err.message}; last seen ${seen.join(',')}; the proxy's output:\n${proxy.output().slice(-6000)}`);
      });
      rewrite(proxy, 'pool_mode: transaction', 'pool_mode: sometimes');
      proxy.child.kill('SIGHUP');
      await until('the failed reload is logged', () => proxy.output().includes('reload failed'), { timeoutMs: 15_000 });
      expect(proxy.output()).toContain('pool_mode');
      const names = await Promise.all(Array.from({ length: 8 }, () => whoami(proxy)));
      expect(names.every((n) => n === B)).toBe(true);
      expect(proxy.child.exitCode).toBeNull();
    } finally {
      await proxy.stop();
    }
  }, 90_000);

  it('SIGUSR1 pauses (a query waits, no server is left), SIGUSR2 resumes it', async () => {
    const proxy = await start(workers);
    const c = new pg.Client(options(proxy));
    c.on('error', () => undefined);
    try {
      await c.connect();
      await c.query('SELECT 1');
      proxy.child.kill('SIGUSR1');
      await until('every server is closed', async () => Number(await adminSql(testEnv().cluster, `SELECT count(*) FROM pg_stat_activity WHERE datname = '${A}' AND usename = '${scram.name}'`)) === 0, { timeoutMs: 15_000 });
      await until('SHOW STATE says paused', async () => (await psql(conninfo(proxy.port, 'pgbouncer', scram.name), 'SHOW STATE', { PGPASSWORD: scram.password })).stdout.includes('paused|yes'), { timeoutMs: 15_000 });
      let answered = false;
      const pending = c.query('SELECT 7 AS seven').then((r) => ((answered = true), r));
      await until('the query waits', async () => {
        const pools = await psql(conninfo(proxy.port, 'pgbouncer', scram.name), 'SHOW POOLS', { PGPASSWORD: scram.password });
        return pools.stdout.split('\n').some((l) => l.startsWith(`ops|${scram.name}|`) && l.split('|')[3] === '1');
      }, { timeoutMs: 15_000 });
      expect(answered).toBe(false);
      proxy.child.kill('SIGUSR2');
      expect((await pending).rows[0].seven).toBe(7);
    } finally {
      await c.end().catch(() => undefined);
      await proxy.stop();
    }
  }, 90_000);

  it('SIGINT lets a transaction in flight commit, tells an idle client 57P01, and exits 0', async () => {
    const proxy = await start(workers, ['shutdown_timeout: 20']);
    const busy = new pg.Client(options(proxy));
    const idle = new pg.Client(options(proxy));
    const idleErrors: string[] = [];
    busy.on('error', () => undefined);
    idle.on('error', (e: Error & { code?: string }) => idleErrors.push(e.code ?? e.message));
    try {
      await busy.connect();
      await idle.connect();
      await idle.query('SELECT 1');
      await busy.query('BEGIN');
      await busy.query(`INSERT INTO done VALUES (${100 + workers})`);
      const sleeping = busy.query('SELECT pg_sleep(1)');
      await until('the query runs upstream', async () => Number(await adminSql(testEnv().cluster, `SELECT count(*) FROM pg_stat_activity WHERE datname = '${A}' AND query = 'SELECT pg_sleep(1)' AND state = 'active'`)) === 1);
      const exit = exited(proxy.child);
      proxy.child.kill('SIGINT');
      await sleeping;
      await busy.query('COMMIT');
      expect(await exit).toBe(0);
      expect(Number(await adminSql(testEnv().cluster, `SELECT count(*) FROM done WHERE n = ${100 + workers}`, A))).toBe(1);
      await until('the idle client heard why', () => idleErrors.length > 0);
      expect(idleErrors[0]).toBe('57P01');
    } finally {
      await busy.end().catch(() => undefined);
      await idle.end().catch(() => undefined);
      await proxy.stop();
    }
  }, 90_000);

  it('SHUTDOWN on the console stops the whole proxy; SIGQUIT stops at once', async () => {
    const proxy = await start(workers);
    const exit = exited(proxy.child);
    const r = await psql(conninfo(proxy.port, 'pgbouncer', scram.name), 'SHUTDOWN WAIT_FOR_CLIENTS', { PGPASSWORD: scram.password });
    expect(r.stderr).toBe('');
    expect(await exit).toBe(0);
    const second = await start(workers, ['shutdown_timeout: 60']);
    const held = new pg.Client({ ...options(second) });
    held.on('error', () => undefined);
    await held.connect();
    await held.query('BEGIN');
    const quit = exited(second.child);
    second.child.kill('SIGQUIT'); // does not wait for the open transaction
    expect(await quit).toBe(0);
    await held.end().catch(() => undefined);
  }, 90_000);
});

describe('the primary', () => {
  it('a certificate a worker cannot load fails the reload in every worker: none switches', async () => {
    const proxy = await start(2);
    try {
      const text = readFileSync(proxy.configFile, 'utf8');
      const certLine = text.split('\n').find((l) => l.startsWith('client_tls_cert_file:'))!;
      writeFileSync(proxy.configFile, text.replace(certLine, 'client_tls_cert_file: /nonexistent/cert.pem').replace(`dbname=${A}`, `dbname=${B}`));
      proxy.child.kill('SIGHUP');
      await until('the failed reload is logged', () => proxy.output().includes('reload failed; every worker keeps the running configuration'), { timeoutMs: 15_000 });
      const names = await Promise.all(Array.from({ length: 8 }, () => whoami(proxy)));
      expect(names.every((n) => n === A)).toBe(true); // nobody switched to the new dbname
    } finally {
      await proxy.stop();
    }
  }, 60_000);

  it('names restart-only keys a reload cannot change', async () => {
    const proxy = await start(2);
    try {
      rewrite(proxy, 'workers: 2', 'workers: 3');
      proxy.child.kill('SIGHUP');
      await until('the warning', () => proxy.output().includes('workers changed; it takes effect only after a restart'), { timeoutMs: 15_000 });
      expect(listeningCount(proxy.output())).toBe(2);
    } finally {
      await proxy.stop();
    }
  }, 60_000);

  it('kills a worker that outlasts shutdown_timeout and exits 1', async () => {
    const proxy = await start(2, ['shutdown_timeout: 1']);
    const pids = [...proxy.output().matchAll(/"pid":(\d+),[^\n]*"worker":\d+[^\n]*pg-ingress listening/g)].map((m) => Number(m[1]));
    expect(pids).toHaveLength(2);
    process.kill(pids[0]!, 'SIGSTOP'); // stuck: it can never finish its shutdown
    const exit = exited(proxy.child);
    proxy.child.kill('SIGTERM');
    expect(await exit).toBe(1);
    expect(proxy.output()).toContain('worker did not stop in time; killing it');
    expect(() => process.kill(pids[0]!, 0)).toThrow(); // gone
  }, 60_000);
});
