// Every pool limit and timeout, one test each, with short settings. A user of
// its own keeps the server counts of this file apart from the others'.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import pg from 'pg';
import type { RunningProxy } from '../../src/proxy.js';
import { initSql } from '../../src/cli/init-sql.js';
import { adminSql, USERS } from '../harness/postgres.js';
import { connectError, pgOptions, startTestProxy, testEnv, withClient } from '../harness/proxy.js';
import { activeQueries, until, queuedClients } from '../harness/poll.js';
import { errorFields, RawConn } from '../harness/raw.js';

const LIMITS = { name: 'limits_user', password: 'limits-secret-pw' };
let proxy: RunningProxy | null = null;

beforeAll(async () => {
  const { cluster } = testEnv();
  await adminSql(cluster, `DROP ROLE IF EXISTS ${LIMITS.name}; CREATE ROLE ${LIMITS.name} LOGIN PASSWORD '${LIMITS.password}'`);
  // A database the auth_user may enter but limits_user may not: its server logins fail after auth succeeds.
  await adminSql(cluster, 'DROP DATABASE IF EXISTS lockeddb');
  await adminSql(cluster, 'CREATE DATABASE lockeddb');
  await adminSql(cluster, initSql({ authUser: USERS.auth.name, authRole: 'pgbouncer_auth' }), 'lockeddb');
  await adminSql(cluster, `REVOKE CONNECT ON DATABASE lockeddb FROM PUBLIC; GRANT CONNECT ON DATABASE lockeddb TO ${USERS.auth.name}`);
});
afterEach(async () => {
  await proxy?.close();
  proxy = null;
});

async function start(overrides: Record<string, unknown>): Promise<RunningProxy> {
  const { cluster } = testEnv();
  const at = `host=${cluster.host} port=${cluster.port}`;
  proxy = await startTestProxy({ databases: { app1: `${at} dbname=app1`, app2: `${at} dbname=app2`, locked: `${at} dbname=lockeddb` }, ...overrides });
  return proxy;
}

const opts = (db = 'app1', who: { name: string; password: string } = LIMITS): pg.ClientConfig => pgOptions(proxy!.port, db, who.name, who.password);
const connect = async (db = 'app1', who = LIMITS): Promise<pg.Client> => {
  const c = new pg.Client(opts(db, who));
  c.on('error', () => undefined); // some tests are thrown out on purpose; nextError() reads why
  await c.connect();
  return c;
};
const pid = async (c: pg.Client): Promise<number> => (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
const serverCount = async (): Promise<number> =>
  Number(await adminSql(testEnv().cluster, `SELECT count(*) FROM pg_stat_activity WHERE usename = '${LIMITS.name}' AND backend_type = 'client backend'`));
const backendGone = async (backend: number): Promise<boolean> =>
  (await adminSql(testEnv().cluster, `SELECT count(*) FROM pg_stat_activity WHERE pid = ${backend}`)) === '0';
/** The proxy's own pool of limits_user for `database`. */
const poolOf = (database: string) => {
  const pool = [...proxy!.context.pools.all()].find((p) => p.database === database && p.address.user === LIMITS.name);
  if (!pool) throw new Error(`no pool for ${database}/${LIMITS.name}`);
  return pool;
};
/** The error a client gets pushed (a FATAL between queries) as node-postgres reports it. */
const nextError = (c: pg.Client): Promise<{ code?: string; message: string }> => new Promise((resolve) => c.once('error', resolve));

describe('pool sizes', () => {
  it('min_pool_size: opens servers up to the minimum once a login gave credentials', async () => {
    await start({ pool_mode: 'transaction', min_pool_size: 3, default_pool_size: 5 });
    await withClient(opts(), async (c) => c.query('SELECT 1'));
    await until('3 servers of limits_user in pg_stat_activity (min_pool_size)', async () => (await serverCount()) === 3);
  });

  it('reserve_pool_size: a client that waited reserve_pool_timeout gets an extra server', async () => {
    await start({ pool_mode: 'transaction', default_pool_size: 1, reserve_pool_size: 1, reserve_pool_timeout: 0.3, query_wait_timeout: 5 });
    const a = await connect();
    const b = await connect();
    try {
      await a.query('BEGIN');
      const held = await pid(a);
      const started = Date.now();
      const other = await pid(b); // waits for the reserve
      expect(other).not.toBe(held);
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
      await a.query('COMMIT');
    } finally {
      await a.end();
      await b.end();
    }
  });

  it('max_db_connections: clients of two users share one server budget for a database', async () => {
    await start({ pool_mode: 'transaction', max_db_connections: 1 });
    const a = await connect('app1');
    const b = await connect('app1', USERS.md5); // logs in by evicting a's idle server
    try {
      await a.query('BEGIN');
      let done = false;
      const q = b.query('SELECT 2 AS two').then((r) => {
        done = true;
        return r.rows[0].two as number;
      });
      await until("b queued in app1's pools", () => queuedClients(proxy!, 'app1') === 1);
      expect(done).toBe(false); // held back by the database's budget
      // This proxy's servers for app1, across both users' pools (other test files share the cluster).
      let servers = 0;
      for (const pool of proxy!.context.pools.all()) if (pool.database === 'app1') servers += pool.total;
      expect(servers).toBe(1);
      await a.query('COMMIT'); // a's server idles; b's pool evicts it and opens its own
      expect(await q).toBe(2);
    } finally {
      await a.end();
      await b.end();
    }
  });

  it('max_user_connections: one user shares one server budget across databases', async () => {
    await start({ pool_mode: 'transaction', max_user_connections: 1 });
    const a = await connect('app1');
    const b = await connect('app2');
    try {
      await a.query('BEGIN');
      let done = false;
      const q = b.query('SELECT 3 AS three').then((r) => {
        done = true;
        return r.rows[0].three as number;
      });
      await until("b queued in app2's pool", () => queuedClients(proxy!, 'app2') === 1);
      expect(done).toBe(false); // held back by the user's budget
      await a.query('COMMIT'); // a's server idles and is evicted for b's pool
      expect(await q).toBe(3);
    } finally {
      await a.end();
      await b.end();
    }
  });
});

describe('server lifetimes', () => {
  it('server_lifetime: a server older than the lifetime is replaced', async () => {
    await start({ pool_mode: 'transaction', server_lifetime: 0.5 });
    await withClient(opts(), async (c) => {
      const first = await pid(c);
      // Idle in the pool once expired, it is closed by the janitor's next round (once a second).
      await until(`server ${first} closed past server_lifetime`, () => backendGone(first), { timeoutMs: 4000 });
      expect(await pid(c)).not.toBe(first);
    });
  });

  it('server_idle_timeout: idle servers are closed', async () => {
    await start({ pool_mode: 'transaction', server_idle_timeout: 0.3 });
    await withClient(opts(), async (c) => {
      const first = await pid(c); // a server of ours, idle in the pool from now on
      // 0.3 s idle, then at most one janitor round (once a second), and slack for a busy machine.
      await until(`server ${first} closed past server_idle_timeout`, () => backendGone(first), { timeoutMs: 4000 });
      expect(await pid(c)).not.toBe(first); // and a new one opens on demand
    });
  });

  it('server_login_retry: after a failed server login, clients fail fast until the retry time', async () => {
    await start({ pool_mode: 'transaction', server_login_retry: 30 });
    const first = await connectError(opts('locked'));
    expect(first.code).toBe('42501'); // PostgreSQL's own refusal, relayed
    const started = Date.now();
    const second = await connectError(opts('locked'));
    expect(second.code).toBe('08006');
    expect(second.message).toMatch(/server login has been failing, try again later \(server_login_retry\)/);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('server_check_query: runs on a server idle longer than server_check_delay before reuse', async () => {
    const bump = "SELECT pg_catalog.set_config('pgi.checks', (COALESCE(NULLIF(current_setting('pgi.checks', true), ''), '0')::int + 1)::text, false)";
    await start({ pool_mode: 'transaction', server_check_query: bump, server_check_delay: 0.2 });
    await withClient(opts(), async (c) => {
      await c.query('SELECT 1');
      // SHOW POOLS' sv_used: the proxy now holds the idle server due for its check.
      await until('the idle server due for server_check_query', () => poolOf('app1').state(Date.now()).used === 1, { timeoutMs: 2000 });
      const checks = (await c.query("SELECT current_setting('pgi.checks', true) AS n")).rows[0].n as string;
      expect(Number(checks)).toBeGreaterThanOrEqual(1);
    });
  });

  it('server_reset_query_always: resets between transaction-mode clients too', async () => {
    // A temporary table is session state no proxy can carry to another server (see README): only a reset removes it.
    const leak = async (): Promise<string | null> => {
      await withClient(opts(), (a) => a.query('CREATE TEMP TABLE reset_always_probe (x int)'));
      return withClient(opts(), async (b) => (await b.query("SELECT to_regclass('pg_temp.reset_always_probe')::text AS t")).rows[0].t as string | null);
    };
    await start({ pool_mode: 'transaction', default_pool_size: 1 });
    expect(await leak()).toBe('reset_always_probe'); // the documented transaction-mode leak of temp tables
    await proxy!.close();
    await start({ pool_mode: 'transaction', default_pool_size: 1, server_reset_query_always: true });
    expect(await leak()).toBeNull();
  });

  it('an untracked SET does not leak between transaction-mode clients even without server_reset_query_always', async () => {
    await start({ pool_mode: 'transaction', default_pool_size: 1 });
    await withClient(opts(), (a) => a.query("SET statement_timeout = '1234ms'"));
    const seen = await withClient(opts(), async (b) => (await b.query('SHOW statement_timeout')).rows[0].statement_timeout as string);
    expect(seen).toBe('0');
  });
});

describe('client timeouts', () => {
  it('query_timeout: a query running too long ends the client and closes its server', async () => {
    await start({ query_timeout: 0.5 });
    const c = await connect();
    c.on('error', () => undefined);
    const backend = await pid(c);
    // Far longer than query_timeout plus the once-a-second check of it.
    await expect(c.query('SELECT pg_sleep(5)')).rejects.toMatchObject({ code: '57014', message: expect.stringMatching(/query_timeout/) });
    // At the latest when pg_sleep returns and the backend finds its client gone.
    await until(`server ${backend} closed after query_timeout`, () => backendGone(backend), { timeoutMs: 7000 });
  });

  it('client_idle_timeout: an idle client is disconnected', async () => {
    await start({ pool_mode: 'transaction', client_idle_timeout: 0.4 });
    const c = await connect();
    const err = await nextError(c);
    expect(err.code).toBe('57P05');
    expect(err.message).toMatch(/client_idle_timeout/);
  });

  it('idle_transaction_timeout: a client idle inside a transaction is disconnected and its server closed', async () => {
    await start({ pool_mode: 'transaction', idle_transaction_timeout: 0.4 });
    const c = await connect();
    const failure = nextError(c);
    await c.query('BEGIN');
    const backend = await pid(c);
    const err = await failure;
    expect(err.code).toBe('25P03');
    await until(`server ${backend} closed after idle_transaction_timeout`, () => backendGone(backend));
  });

  it('client_login_timeout: a connection that never logs in is closed', async () => {
    await start({ client_login_timeout: 0.5 });
    const c = await RawConn.connect(proxy!.port);
    const started = Date.now();
    const m = await c.message(3000);
    expect(m?.type).toBe('E');
    expect(errorFields(m!.body).M).toMatch(/client_login_timeout/);
    expect(await c.waitClosed()).toBe(true);
    expect(Date.now() - started).toBeLessThan(2500);
  });
});

describe('cancel while the pool is full', () => {
  it('a waiting client cancels nothing, and the running client can still cancel its own query', async () => {
    await start({ pool_mode: 'transaction', default_pool_size: 1 });
    const a = await connect();
    const b = await connect();
    try {
      const keysOf = (c: pg.Client): { processID: number; secretKey: number } => c as unknown as { processID: number; secretKey: number };
      /** Sends c's CancelRequest; resolves once the proxy closed that connection, having forwarded it or not. */
      const cancel = (c: pg.Client): Promise<void> =>
        new Promise((resolve) => {
          const { processID, secretKey } = keysOf(c);
          const s = net.connect(proxy!.port, '127.0.0.1', () => {
            const buf = Buffer.alloc(16);
            buf.writeInt32BE(16, 0);
            buf.writeInt32BE(80877102, 4);
            buf.writeInt32BE(processID, 8);
            buf.writeInt32BE(secretKey, 12);
            s.end(buf);
          });
          s.on('error', () => undefined);
          s.on('close', () => resolve());
        });
      const running = (query: string) => (): Promise<boolean> => activeQueries(testEnv().cluster, LIMITS.name, query).then((n) => n === 1);
      // Long enough to be still running when b's cancel has been dealt with, which a wrongly forwarded cancel would end.
      const slowText = 'SELECT pg_sleep(2) AS slept';
      const slow = a.query(slowText);
      await until("a's query running", running(slowText));
      const waiting = b.query('SELECT 7 AS n'); // queued: the only server is a's
      await until('b queued for the only server', () => queuedClients(proxy!, 'app1') === 1);
      await cancel(b); // b has no server: nothing is cancelled
      expect((await slow).rows[0].slept).toBe('');
      expect((await waiting).rows[0].n).toBe(7);
      const slow2Text = 'SELECT pg_sleep(5)';
      const slow2 = a.query(slow2Text);
      await until("a's second query running", running(slow2Text));
      await cancel(a);
      await expect(slow2).rejects.toMatchObject({ code: '57014' });
    } finally {
      await a.end();
      await b.end();
    }
  });
});
