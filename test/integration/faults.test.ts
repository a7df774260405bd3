// Faults upstream: a backend killed idle and mid-query, PostgreSQL restarted
// (fast and immediate) under load, a black-holed upstream, the auth database
// down while the target is up, auth_user's password changed. Each ends in an
// ErrorResponse with a SQLSTATE, within the configured timeouts; no broken
// server is handed out again, and pools refill without restarting the proxy.
// The file runs its own PostgreSQL: restarts and ALTER ROLE must not touch the
// cluster other test files share.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { initSql } from '../../src/cli/init-sql.js';
import type { RunningProxy } from '../../src/proxy.js';
import { adminSql, startCluster, USERS, type ClusterInfo } from '../harness/postgres.js';
import { connectError, LogCapture, pgOptions, startTestProxy } from '../harness/proxy.js';
import { Forwarder, pgCtl, until, withDeadline } from '../harness/hostile.js';

const { scram, md5, auth } = USERS;
let cluster: ClusterInfo & { stop(): Promise<void> };
let proxy: RunningProxy | null = null;
let forwarder: Forwarder | null = null;
const clients: pg.Client[] = [];

beforeAll(async () => {
  cluster = await startCluster();
  // A database that only holds the auth_query function, for the tests that take it away.
  await adminSql(cluster, 'CREATE DATABASE authdb');
  await adminSql(cluster, initSql({ authUser: auth.name, authRole: 'pgbouncer_auth' }), 'authdb');
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
});
afterEach(async () => {
  for (const c of clients.splice(0)) await c.end().catch(() => undefined);
  await proxy?.close();
  await forwarder?.close();
  proxy = null;
  forwarder = null;
});

const at = (): string => `host=${cluster.host} port=${cluster.port}`;

async function start(overrides: Record<string, unknown> = {}, logs?: LogCapture): Promise<RunningProxy> {
  proxy = await startTestProxy(
    {
      databases: { app1: `${at()} dbname=app1`, app2: `${at()} dbname=app2` },
      admin_users: [scram.name],
      auth_dbname: 'app1',
      auth_failure_limit: 0,
      server_login_retry: 0.5,
      ...overrides,
    },
    {},
    logs,
  );
  return proxy;
}

const opts = (db = 'app1', who: { name: string; password: string } = scram): pg.ClientConfig => pgOptions(proxy!.port, db, who.name, who.password);
async function connect(db = 'app1', who: { name: string; password: string } = scram): Promise<pg.Client> {
  const c = new pg.Client(opts(db, who));
  c.on('error', () => undefined); // pushed errors are read with nextError()
  await withDeadline(c.connect(), 15_000, 'connect');
  clients.push(c);
  return c;
}
const pid = async (c: pg.Client): Promise<number> => (await withDeadline(c.query('SELECT pg_backend_pid() AS p'), 10_000, 'query')).rows[0].p as number;
const sql = (text: string, db = 'postgres'): Promise<string> => adminSql(cluster, text, db);
const alive = async (backend: number): Promise<boolean> => (await sql(`SELECT count(*) FROM pg_stat_activity WHERE pid = ${backend}`)) !== '0';
/** The error a client is sent between queries, as node-postgres reports it. */
const nextError = (c: pg.Client): Promise<{ code?: string; message: string }> => new Promise((resolve) => c.once('error', resolve));

/** Whether a login (and a query) succeeds now. */
async function canLogIn(options: pg.ClientConfig): Promise<boolean> {
  const c = new pg.Client(options);
  c.on('error', () => undefined);
  try {
    await withDeadline(c.connect(), 10_000, 'connect');
    await withDeadline(c.query('SELECT 1'), 10_000, 'query');
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** SHOW POOLS' row of one pool, through the admin console. */
async function poolRow(database: string, user = scram.name): Promise<Record<string, string> | undefined> {
  const c = new pg.Client(opts('pgbouncer'));
  c.on('error', () => undefined);
  try {
    await c.connect();
    const rows = (await c.query('SHOW POOLS')).rows as Record<string, string>[];
    return rows.find((r) => r.database === database && r.user === user);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Fresh clients, one after another: every one of them must be served (no broken server handed out). */
async function freshQueries(n: number, db = 'app1'): Promise<void> {
  for (let i = 0; i < n; i++) {
    const c = await connect(db);
    expect((await withDeadline(c.query('SELECT 1 AS one'), 10_000, 'fresh query')).rows[0].one).toBe(1);
    await c.end();
    clients.splice(clients.indexOf(c), 1);
  }
}

describe('a backend killed', () => {
  it('idle, in transaction mode: the proxy drops that server and the client’s next query runs on a new one', async () => {
    await start({ pool_mode: 'transaction' });
    const c = await connect();
    const first = await pid(c);
    expect(await sql(`SELECT pg_terminate_backend(${first})`)).toBe('t');
    expect(await until(async () => !(await alive(first)))).toBe(true);
    // The proxy has noticed once its pool no longer counts the server.
    expect(await until(async () => Number((await poolRow('app1'))?.sv_idle ?? 0) === 0)).toBe(true);
    const second = await pid(c);
    expect(second).not.toBe(first);
    await freshQueries(5);
  });

  it('idle, in session mode: its client is told (57P01) and the next client gets a new server', async () => {
    await start({ pool_mode: 'session' });
    const c = await connect();
    const told = nextError(c);
    const first = await pid(c);
    await sql(`SELECT pg_terminate_backend(${first})`);
    const err = await withDeadline(told, 5000, 'the client is told');
    expect(['57P01', '08006']).toContain(err.code);
    const d = await connect();
    expect(await pid(d)).not.toBe(first);
    await freshQueries(5);
  });

  it('mid-query: the client gets 57P01 or 08006 at once, the next client is served by a new server', async () => {
    await start({ pool_mode: 'transaction', default_pool_size: 2 });
    const c = await connect();
    const running = c.query('SELECT pg_sleep(30)').then(
      () => null,
      (e: { code?: string; message: string }) => e,
    );
    let backend = 0;
    expect(
      await until(async () => {
        backend = Number(await sql(`SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'`));
        return backend > 0;
      }),
    ).toBe(true);
    const killed = Date.now();
    await sql(`SELECT pg_terminate_backend(${backend})`);
    const err = await withDeadline(running, 5000, 'the killed query');
    expect(err).not.toBeNull();
    expect(['57P01', '08006']).toContain(err!.code);
    expect(Date.now() - killed).toBeLessThan(2000);
    const d = await connect();
    expect(await pid(d)).not.toBe(backend);
    await freshQueries(10);
  });
});

describe('the upstream black-holed (accepts, never answers)', () => {
  it('everything behind it: the client gets 08006 within server_connect_timeout', async () => {
    forwarder = await Forwarder.start({ host: cluster.host, port: cluster.port }, 'hole');
    await start({ server_connect_timeout: 1, databases: { hole: `host=127.0.0.1 port=${forwarder.port} dbname=app1` } });
    const started = Date.now();
    const err = await connectError(opts('hole'));
    const took = Date.now() - started;
    console.log(`black hole (auth and server): ${err.code} after ${took} ms: ${err.message}`);
    expect(err.code).toBe('08006');
    expect(took).toBeLessThan(1000 + 2000);
  });

  it('only new server connections: the login gets 08006 within server_connect_timeout, and the pool refills once the upstream answers again', async () => {
    forwarder = await Forwarder.start({ host: cluster.host, port: cluster.port });
    await start({ pool_mode: 'transaction', server_connect_timeout: 1, databases: { app1: `host=127.0.0.1 port=${forwarder.port} dbname=app1` } });
    const early = await connect('app1', scram); // opens the auth_query connection and a server
    forwarder.mode = 'hole'; // connections already open still pass
    const started = Date.now();
    const err = await connectError(opts('app1', md5)); // a new pool: a new server connection
    const took = Date.now() - started;
    console.log(`black hole (server only): ${err.code} after ${took} ms: ${err.message}`);
    expect(err.code).toBe('08006');
    expect(took).toBeLessThan(1000 + 2000);
    expect((await early.query('SELECT 1 AS one')).rows[0].one).toBe(1); // others are untouched
    forwarder.mode = 'pass';
    // server_login_retry is 0.5 s: within a few seconds the md5 pool logs in.
    expect(await until(() => canLogIn(opts('app1', md5)), 5000, 250)).toBe(true);
  });
});

describe('the auth database down while the target is up', () => {
  it('auth_dbname refuses connections: clients get 08006, the log names the database, and it recovers without a restart', async () => {
    const logs = new LogCapture();
    await start({ auth_dbname: 'authdb', auth_cache_ttl: 0, server_connect_timeout: 2 }, logs);
    await connect(); // works while authdb is up
    await sql(`ALTER DATABASE authdb ALLOW_CONNECTIONS false; SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'authdb'`);
    try {
      const started = Date.now();
      const err = await connectError(opts());
      expect(err.code).toBe('08006');
      expect(Date.now() - started).toBeLessThan(2000 + 2000);
      const said = logs.lines.filter((l) => l.level === 50 && JSON.stringify(l).includes('authdb'));
      expect(said.length).toBeGreaterThan(0);
      expect(JSON.stringify(said[0])).toMatch(/not currently accepting connections/);
      expect((await sql('SELECT 1', 'app1'))).toBe('1'); // the target itself is up
    } finally {
      await sql('ALTER DATABASE authdb ALLOW_CONNECTIONS true');
    }
    await connect();
  });

  it('the admin console’s auth_dbname entry on a port that refuses: 08006 at once, app logins unaffected, recovers when it listens again', async () => {
    forwarder = await Forwarder.start({ host: cluster.host, port: cluster.port });
    // Admin console users are looked up in the auth_dbname entry; app users in authdb on their own server.
    await start({ auth_dbname: 'authdb', auth_cache_ttl: 0, server_connect_timeout: 2, databases: { app1: `${at()} dbname=app1`, authdb: `host=127.0.0.1 port=${forwarder.port} dbname=authdb` } });
    await forwarder.stop();
    const started = Date.now();
    const err = await connectError(opts('pgbouncer'));
    expect(err.code).toBe('08006');
    expect(Date.now() - started).toBeLessThan(2000 + 2000);
    await connect('app1'); // the target and its own lookups are fine
    await forwarder.listen();
    const back = await connect('pgbouncer');
    expect((await back.query('SHOW VERSION')).rows.length).toBe(1);
  });
});

describe('auth_user’s password changed', () => {
  it('clients get 08006, the log says to fix auth_password without showing it, and restoring it recovers without a restart', async () => {
    const logs = new LogCapture();
    await start({ auth_cache_ttl: 0 }, logs);
    await connect();
    const rotated = 'rotated-elsewhere-pw';
    await sql(`ALTER ROLE ${auth.name} PASSWORD '${rotated}'`);
    try {
      // The lookup connections already logged in would hide the change: end them.
      await sql(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '${auth.name}'`);
      const err = await connectError(opts());
      expect(err.code).toBe('08006');
      expect(err.message).not.toContain(auth.password);
      const said = logs.lines.filter((l) => l.level === 50 && /auth_password/.test(JSON.stringify(l)));
      expect(said.length).toBeGreaterThan(0);
      expect(JSON.stringify(said[0])).toContain(auth.name);
      expect(logs.text).not.toContain(auth.password);
      expect(logs.text).not.toContain(rotated);
    } finally {
      await sql(`ALTER ROLE ${auth.name} PASSWORD '${auth.password}'`);
    }
    expect(await until(() => canLogIn(opts()), 5000, 250)).toBe(true);
  });
});

describe('PostgreSQL restarted under load', () => {
  it('fast, then immediate: errors carry a SQLSTATE, nothing hangs, and the pool refills without a restart', { timeout: 180_000 }, async () => {
    await start({ pool_mode: 'transaction', default_pool_size: 4, server_connect_timeout: 3, query_wait_timeout: 15 });
    const errors: { at: number; code?: string; message: string }[] = [];
    const lastOk = new Map<number, number>();
    let stop = false;
    const worker = async (id: number): Promise<void> => {
      let c: pg.Client | null = null;
      let told = false; // an error was pushed to this client (node-postgres then refuses queries without saying why again)
      while (!stop) {
        try {
          if (!c) {
            const fresh = new pg.Client(opts());
            told = false;
            fresh.on('error', (e: Error & { code?: string }) => {
              told = true;
              errors.push({ at: Date.now(), code: e.code, message: `pushed: ${e.message}` });
            });
            c = fresh;
            await withDeadline(fresh.connect(), 20_000, 'connect');
          }
          // Half the clients keep a short query running, so that restarts also catch queries in flight.
          await withDeadline(c.query(id % 2 === 0 ? 'SELECT 1' : 'SELECT pg_sleep(0.02)'), 20_000, 'query');
          lastOk.set(id, Date.now());
        } catch (err) {
          const e = err as { code?: string; message: string };
          if (!(told && /not queryable/.test(e.message))) errors.push({ at: Date.now(), code: e.code, message: e.message });
          await c?.end().catch(() => undefined);
          c = null;
          await new Promise((r) => setTimeout(r, 100)); // back off while the server is away
        }
      }
      await c?.end().catch(() => undefined);
    };
    const workers = Array.from({ length: 8 }, (_, id) => worker(id));
    const report: string[] = [];
    try {
      expect(await until(() => lastOk.size === 8, 15_000)).toBe(true);
      for (const mode of ['fast', 'immediate']) {
        const before = errors.length;
        const down = Date.now();
        await pgCtl(cluster, ['restart', '-m', mode, '-w', '-t', '60']);
        const up = Date.now();
        // Every worker is served again soon after the server is back.
        const recovered = await until(() => [...lastOk.values()].every((t) => t > up), 15_000);
        report.push(`${mode}: down ${up - down} ms, all 8 clients served again ${Date.now() - up} ms after, ${errors.length - before} errors (${[...new Set(errors.slice(before).map((e) => e.code ?? `no SQLSTATE: ${e.message}`))].join(', ')})`);
        expect(recovered).toBe(true);
      }
    } finally {
      stop = true;
      await Promise.all(workers);
      console.log(`restarts under load: ${report.join('; ')}`);
    }
    expect(errors.filter((e) => /no answer within/.test(e.message))).toEqual([]); // nothing hung
    expect(errors.filter((e) => e.code === undefined)).toEqual([]); // every failure was an ErrorResponse
    for (const e of errors) expect(e.code!).toMatch(/^(57P0[123]|08\w{3}|53300)$/);
    await freshQueries(20); // no broken server handed out
  });
});
