// SIGTERM drains, as a Kubernetes rollout needs: the listener closes at once,
// a transaction in flight finishes and commits, its client is told to go
// (57P01) between transactions, session clients keep their session until
// shutdown_timeout, and the process exits 0. The real CLI, one and two workers.
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { listeningCount, startCliProxy } from '../harness/cli.js';
import { until } from '../harness/poll.js';
import { adminSql, USERS } from '../harness/postgres.js';
import { pgOptions, testEnv } from '../harness/proxy.js';

const scram = USERS.scram;
const DB = 'shutdown_t';

beforeAll(async () => {
  const { cluster } = testEnv();
  await adminSql(cluster, `CREATE DATABASE ${DB}`);
  await adminSql(cluster, `CREATE TABLE done (worker int); GRANT ALL ON done TO ${scram.name}`, DB);
});

/** The CLI with `workers` and `shutdown_timeout` seconds, in `mode`. */
function startCli(workers: number, mode: 'session' | 'transaction', shutdownTimeout: number): ReturnType<typeof startCliProxy> {
  return startCliProxy({
    yaml: () => [`workers: ${workers}`, `pool_mode: ${mode}`, 'metrics_port: off', 'auth_dbname: postgres', `shutdown_timeout: ${shutdownTimeout}`],
    env: { PG_INGRESS_AUTH_PASSWORD: USERS.auth.password },
    ready: (out) => listeningCount(out) === workers,
    timeoutMs: 30_000,
  });
}

function exited(child: import('node:child_process').ChildProcess): Promise<number | null> {
  return child.exitCode !== null ? Promise.resolve(child.exitCode) : new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

describe.each([1, 2])('workers: %i', (workers) => {
  it('SIGTERM lets a transaction in flight commit, then tells its client to go, and exits 0', async () => {
    const proxy = await startCli(workers, 'transaction', 20);
    const c = new pg.Client(pgOptions(proxy.port, DB, scram.name, scram.password));
    const errors: Array<{ code?: string; message: string }> = [];
    c.on('error', (e: Error & { code?: string }) => errors.push({ code: e.code, message: e.message }));
    await c.connect();
    try {
      await c.query('BEGIN');
      await c.query(`INSERT INTO done VALUES (${workers})`);
      const sleeping = c.query('SELECT pg_sleep(1)');
      await until('the query runs upstream', async () => Number(await adminSql(testEnv().cluster, `SELECT count(*) FROM pg_stat_activity WHERE datname = '${DB}' AND query = 'SELECT pg_sleep(1)' AND state = 'active'`)) === 1);
      const exit = exited(proxy.child);
      proxy.child.kill('SIGTERM');
      // The listener closes at once: a new client is not served while the old one finishes
      // (refused; with the primary's round-robin, possibly accepted and closed).
      let refusal = '';
      await until('new connections refused', async () => {
        const probe = new pg.Client({ ...pgOptions(proxy.port, DB, scram.name, scram.password), connectionTimeoutMillis: 2000 });
        probe.on('error', () => undefined);
        return probe.connect().then(
          () => probe.end().then(() => false),
          (e: Error & { code?: string }) => {
            refusal = e.code ?? e.message;
            return true;
          },
        );
      });
      expect(refusal).not.toBe('');
      await sleeping;
      await c.query('COMMIT');
      // Between transactions: told to go, so a driver reconnects to another replica.
      await until('the client is told to go', () => errors.length > 0);
      expect(errors[0]).toMatchObject({ code: '57P01', message: 'pg-ingress is shutting down' });
      expect(await exit).toBe(0);
      expect(await adminSql(testEnv().cluster, `SELECT count(*) FROM done WHERE worker = ${workers}`, DB)).toBe('1');
    } finally {
      await c.end().catch(() => undefined);
      await proxy.stop();
    }
  }, 60_000);

  it('a session-mode client keeps its session until shutdown_timeout, then the process exits 0', async () => {
    const proxy = await startCli(workers, 'session', 1);
    const c = new pg.Client(pgOptions(proxy.port, DB, scram.name, scram.password));
    c.on('error', () => undefined);
    await c.connect();
    try {
      const exit = exited(proxy.child);
      const started = Date.now();
      proxy.child.kill('SIGTERM');
      // Still served while the proxy drains.
      expect((await c.query('SELECT 7 AS seven')).rows).toEqual([{ seven: 7 }]);
      expect(await exit).toBe(0);
      expect(Date.now() - started).toBeGreaterThanOrEqual(900); // it waited for the session
      expect(proxy.output()).toContain('shutdown_timeout: closing what is still connected');
    } finally {
      await c.end().catch(() => undefined);
      await proxy.stop();
    }
  }, 60_000);
});
