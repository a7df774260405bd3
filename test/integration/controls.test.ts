// The admin console's controls through psql and node-postgres, in one process:
// PAUSE under a pgbench load holds transactions and loses none, RESUME
// releases them; DISABLE, KILL, KILL_CLIENT, RECONNECT, WAIT_CLOSE, SET and
// RELOAD each do what PgBouncer's do, observed from PostgreSQL's side; and a
// stats user gets 42501 for every one of them.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/index.js';
import { createLogger } from '../../src/log/logger.js';
import { ExporterMetrics } from '../../src/metrics/exporter.js';
import { startProxy, type RunningProxy } from '../../src/proxy.js';
import { until } from '../harness/poll.js';
import { adminSql, USERS } from '../harness/postgres.js';
import { conninfo, connectError, OpenClients, pgOptions, psql, testConfig, testEnv, withClient } from '../harness/proxy.js';

const run = promisify(execFile);
const { scram, md5 } = USERS;
const DB = 'controls_t';
const OTHER = 'controls_u';
let proxy: RunningProxy;
/** What the next RELOAD reads (the in-process stand-in for the file). */
let nextConfig: () => Config;
const clients = new OpenClients();

const config = (overrides: Record<string, unknown> = {}): Config => {
  const { cluster } = testEnv();
  return testConfig({
    pool_mode: 'transaction',
    admin_users: [scram.name],
    stats_users: [md5.name],
    auth_dbname: 'postgres', // where the test cluster has pgbouncer.get_auth
    default_pool_size: 2,
    databases: { [DB]: `host=${cluster.host} port=${cluster.port} dbname=${DB}`, [OTHER]: `host=${cluster.host} port=${cluster.port} dbname=${OTHER}`, postgres: `host=${cluster.host} port=${cluster.port}` },
    ...overrides,
  });
};

beforeAll(async () => {
  const { cluster } = testEnv();
  for (const db of [DB, OTHER]) {
    await adminSql(cluster, `CREATE DATABASE ${db}`);
    await adminSql(cluster, `CREATE TABLE ticks (n int); GRANT ALL ON ticks TO ${scram.name}; CREATE TABLE whoami (name text); INSERT INTO whoami VALUES ('${db}'); GRANT SELECT ON whoami TO ${scram.name}`, db);
  }
  nextConfig = () => config();
  const initial = config();
  proxy = await startProxy(initial, createLogger(initial.log_level), { hooks: { loadConfig: () => nextConfig() } });
});

afterEach(async () => {
  await clients.endAll();
  await consoleQuery('RESUME');
  await consoleQuery(`ENABLE ${DB}`);
});

afterAll(async () => {
  await proxy?.close();
});

const consoleQuery = (sql: string, user: { name: string; password: string } = scram) => psql(conninfo(proxy.port, 'pgbouncer', user.name), sql, { PGPASSWORD: user.password });
const app = (database = DB): pg.ClientConfig => pgOptions(proxy.port, database, scram.name, scram.password);
const backends = async (database = DB): Promise<number> =>
  Number(await adminSql(testEnv().cluster, `SELECT count(*) FROM pg_stat_activity WHERE datname = '${database}' AND usename = '${scram.name}'`));
const rows = async (database = DB): Promise<number> => Number(await adminSql(testEnv().cluster, 'SELECT count(*) FROM ticks', database));

describe('privileges', () => {
  it.each(['PAUSE', 'RESUME', `RECONNECT ${DB}`, `KILL ${DB}`, 'KILL_CLIENT 1', `DISABLE ${DB}`, `ENABLE ${DB}`, 'WAIT_CLOSE', 'RELOAD', 'SET default_pool_size = 3', 'SHUTDOWN'])('a stats user gets 42501 for %s', async (command) => {
    const r = await consoleQuery(command, md5);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('admin access needed');
    // The proxy still serves, unchanged.
    expect(await withClient(app(), async (c) => (await c.query('SELECT 1 AS one')).rows[0].one)).toBe(1);
  });
});

describe('PAUSE and RESUME', () => {
  it('PAUSE under a pgbench load holds new transactions without errors, RESUME releases them, and no row is lost', async () => {
    const before = await rows();
    const script = join(mkdtempSync(join(tmpdir(), 'pgi-controls-')), 'insert.sql');
    writeFileSync(script, 'INSERT INTO ticks VALUES (1);\n');
    const perClient = 300;
    const bench = run('pgbench', ['-n', '-c', '4', '-j', '2', '-t', String(perClient), '-f', script, conninfo(proxy.port, DB, scram.name)], { env: { PATH: process.env.PATH, PGPASSWORD: scram.password } });
    await until('pgbench is inserting', async () => (await rows()) > before + 20, { timeoutMs: 20_000 });
    const paused = await consoleQuery('PAUSE');
    expect(paused).toMatchObject({ code: 0, stderr: '' });
    // PAUSE answered once every server was released and closed: no backend is left.
    expect(await backends()).toBe(0);
    expect((await consoleQuery('SHOW STATE')).stdout.split('\n')).toEqual(['active|no', 'paused|yes', 'suspended|no']);
    const held = await rows();
    await until('pgbench clients queue behind the pause', () => [...proxy.context.pools.of(DB)].some((p) => p.state(Date.now()).waiting >= 2));
    expect(await rows()).toBe(held); // nothing committed while paused
    expect(await consoleQuery('RESUME')).toMatchObject({ code: 0 });
    const { stdout } = await bench;
    expect(stdout).toContain(`number of transactions actually processed: ${4 * perClient}/${4 * perClient}`);
    expect(stdout).toMatch(/number of failed transactions: 0 /);
    expect(await rows()).toBe(before + 4 * perClient);
  }, 60_000);

  it('PAUSE of one database leaves the others serving', async () => {
    expect(await consoleQuery(`PAUSE ${DB}`)).toMatchObject({ code: 0 });
    // SHOW DATABASES: paused is the second-to-last column, disabled the last.
    const dbs = (await consoleQuery('SHOW DATABASES')).stdout.split('\n').map((l) => l.split('|'));
    expect(dbs.find((r) => r[0] === DB)!.slice(-2)).toEqual(['1', '0']);
    expect(dbs.find((r) => r[0] === OTHER)!.slice(-2)).toEqual(['0', '0']);
    expect((await consoleQuery('SHOW STATE')).stdout).toContain('paused|no');
    expect(await withClient(app(OTHER), async (c) => (await c.query('SELECT name FROM whoami')).rows[0].name)).toBe(OTHER);
    const c = await clients.connect(app());
    const pending = c.query('SELECT 1 AS one');
    await until('the query waits', () => [...proxy.context.pools.of(DB)].some((p) => p.state(Date.now()).waiting === 1));
    expect(await consoleQuery(`RESUME ${DB}`)).toMatchObject({ code: 0 });
    expect((await pending).rows[0].one).toBe(1);
  });
});

describe('DISABLE, KILL, KILL_CLIENT, RECONNECT and WAIT_CLOSE', () => {
  it('DISABLE refuses new clients of the database (55000), keeps the connected ones; ENABLE lets them in again', async () => {
    const connected = await clients.connect(app());
    expect(await consoleQuery(`DISABLE ${DB}`)).toMatchObject({ code: 0 });
    expect((await consoleQuery('SHOW DATABASES')).stdout.split('\n').find((l) => l.startsWith(`${DB}|`))!.split('|').slice(-2)).toEqual(['0', '1']);
    expect(await connectError(app())).toMatchObject({ code: '55000', message: `database "${DB}" is not currently accepting connections` });
    expect((await connected.query('SELECT 2 AS two')).rows[0].two).toBe(2);
    expect(await consoleQuery(`ENABLE ${DB}`)).toMatchObject({ code: 0 });
    expect(await withClient(app(), async (c) => (await c.query('SELECT 3 AS three')).rows[0].three)).toBe(3);
  });

  it('KILL drops the clients and servers of the database (57P01), pauses it until RESUME, and leaves other databases alone', async () => {
    const victim = await clients.connect(app());
    const errors: string[] = [];
    victim.on('error', (e: Error & { code?: string }) => errors.push(e.code ?? e.message));
    await victim.query('BEGIN');
    await victim.query('INSERT INTO ticks VALUES (99)');
    const bystander = await clients.connect(app(OTHER));
    expect(await consoleQuery(`KILL ${DB}`)).toMatchObject({ code: 0 });
    await until('the killed client hears why', () => errors.length > 0);
    expect(errors[0]).toBe('57P01');
    await until('its server is gone', async () => (await backends()) === 0);
    expect(Number(await adminSql(testEnv().cluster, 'SELECT count(*) FROM ticks WHERE n = 99', DB))).toBe(0); // rolled back
    expect((await bystander.query('SELECT name FROM whoami')).rows[0].name).toBe(OTHER);
    // Paused: a new client's query waits for RESUME.
    const next = await clients.connect(app());
    const pending = next.query('SELECT 4 AS four');
    await until('the new query waits', () => [...proxy.context.pools.of(DB)].some((p) => p.state(Date.now()).waiting === 1));
    expect(await consoleQuery('RESUME')).toMatchObject({ code: 0 });
    expect((await pending).rows[0].four).toBe(4);
  });

  it('KILL_CLIENT drops the one client SHOW CLIENTS names, nobody else', async () => {
    const victim = await clients.connect({ ...app(), application_name: 'victim' });
    const other = await clients.connect({ ...app(), application_name: 'other' });
    const errors: string[] = [];
    victim.on('error', (e: Error & { code?: string }) => errors.push(e.code ?? e.message));
    const listed = await consoleQuery('SHOW CLIENTS');
    const header = (await withClient(pgOptions(proxy.port, 'pgbouncer', scram.name, scram.password), (c) => c.query('SHOW CLIENTS'))).fields.map((f) => f.name);
    const line = listed.stdout.split('\n').find((l) => l.split('|')[header.indexOf('application_name')] === 'victim');
    const id = line!.split('|')[header.indexOf('id')]!;
    expect(await consoleQuery(`KILL_CLIENT ${id}`)).toMatchObject({ code: 0 });
    await until('the victim hears why', () => errors.length > 0);
    expect(errors[0]).toBe('57P01');
    expect((await other.query('SELECT 5 AS five')).rows[0].five).toBe(5);
  });

  it('RECONNECT closes every server when it is next free: the next transaction runs on a new backend; WAIT_CLOSE returns once they are gone', async () => {
    const c = await clients.connect(app());
    const first = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    // A second client holds its server in a transaction across the RECONNECT.
    const holder = await clients.connect(app());
    await holder.query('BEGIN');
    const held = (await holder.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    expect(await consoleQuery(`RECONNECT ${DB}`)).toMatchObject({ code: 0 });
    const waitClose = consoleQuery(`WAIT_CLOSE ${DB}`);
    // The held server stays until its transaction ends.
    expect(Number(await adminSql(testEnv().cluster, `SELECT count(*) FROM pg_stat_activity WHERE pid = ${held}`))).toBe(1);
    await holder.query('COMMIT');
    expect(await waitClose).toMatchObject({ code: 0 });
    await until('both old backends are gone', async () => Number(await adminSql(testEnv().cluster, `SELECT count(*) FROM pg_stat_activity WHERE pid IN (${first}, ${held})`)) === 0);
    const second = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    expect([first, held]).not.toContain(second);
  });
});

describe('SET and RELOAD', () => {
  it('SET changes a setting at once (SHOW CONFIG says so); a bad value or a restart-only key is refused and changes nothing', async () => {
    const set = await consoleQuery('SET query_wait_timeout = 7');
    expect(set.stderr).toBe('');
    expect(set.code).toBe(0);
    const shown = await consoleQuery('SHOW CONFIG');
    expect(shown.stdout.split('\n').find((l) => l.startsWith('query_wait_timeout|'))).toMatch(/^query_wait_timeout\|7\|120\|yes$/);
    expect(shown.stdout.split('\n').find((l) => l.startsWith('listen_port|'))).toMatch(/\|no$/);
    expect(proxy.context.config.query_wait_timeout).toBe(7);
    const bad = await consoleQuery("SET query_wait_timeout = 'soon'");
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('query_wait_timeout');
    expect((await consoleQuery('SET listen_port = 1')).stderr).toContain('takes effect only at start');
    expect((await consoleQuery('SET auth_password = x')).stderr).toContain('secret');
    expect(proxy.context.config.query_wait_timeout).toBe(7);
  });

  it('RELOAD with a changed dbname: new connections reach the new database, a connected client finishes where it is', async () => {
    const { cluster } = testEnv();
    const stays = await clients.connect(app());
    await stays.query('BEGIN');
    expect((await stays.query('SELECT name FROM whoami')).rows[0].name).toBe(DB);
    nextConfig = () =>
      config({ databases: { [DB]: `host=${cluster.host} port=${cluster.port} dbname=${OTHER}`, [OTHER]: `host=${cluster.host} port=${cluster.port} dbname=${OTHER}`, postgres: `host=${cluster.host} port=${cluster.port}` } });
    try {
      expect(await consoleQuery('RELOAD')).toMatchObject({ code: 0 });
      expect((await stays.query('SELECT name FROM whoami')).rows[0].name).toBe(DB); // its transaction's server stays
      await stays.query('COMMIT');
      expect(await withClient(app(), async (c) => (await c.query('SELECT name FROM whoami')).rows[0].name)).toBe(OTHER);
      // The connected client's next transaction goes to the new database too: its old server was closed when released.
      expect((await stays.query('SELECT name FROM whoami')).rows[0].name).toBe(OTHER);
    } finally {
      nextConfig = () => config();
      await consoleQuery('RELOAD');
    }
  });

  it('counts reloads by result in /metrics (SET and RELOAD that took: ok; a bad file: failed)', async () => {
    const before = (await proxy.context.stats.collect()).reloads!;
    nextConfig = () => config({ default_pool_size: 'many' });
    try {
      await consoleQuery('RELOAD');
    } finally {
      nextConfig = () => config();
    }
    await consoleQuery('RELOAD');
    await consoleQuery('SET query_wait_timeout = 120');
    const metrics = new ExporterMetrics();
    metrics.update(await proxy.context.stats.collect());
    const text = await metrics.registry.metrics();
    expect(text).toContain(`pg_ingress_config_reloads_total{result="ok"} ${before.ok + 2}`);
    expect(text).toContain(`pg_ingress_config_reloads_total{result="failed"} ${before.failed + 1}`);
  });

  it('RELOAD of a bad configuration keeps the running one and says why', async () => {
    nextConfig = () => config({ default_pool_size: 'many' });
    try {
      const r = await consoleQuery('RELOAD');
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('reload failed, the running configuration stays');
      expect(r.stderr).toContain('default_pool_size');
      expect(proxy.context.config.default_pool_size).toBe(2);
      expect(await withClient(app(), async (c) => (await c.query('SELECT 6 AS six')).rows[0].six)).toBe(6);
    } finally {
      nextConfig = () => config();
    }
  });
});
