// PgBouncer's per-database keys against the real cluster: connect_query,
// client_encoding/datestyle/timezone, server_lifetime, host lists with
// load_balance_hosts, and a database's own auth_query and auth_user. What the
// server did is read from the server: rows connect_query wrote, settings of
// the backend, inet_server_addr(), pg_stat_activity.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../../src/proxy.js';
import { conninfo, LogCapture, OpenClients, pgOptions, psql, startTestProxy, testEnv, withClient } from '../harness/proxy.js';
import { adminSql, freePort, USERS } from '../harness/postgres.js';
import { until } from '../harness/poll.js';

const ALT_AUTH_PASSWORD = 'alt-auth-pw';
let proxy: RunningProxy | null = null;
const clients = new OpenClients();
afterEach(async () => {
  await clients.endAll();
  await proxy?.close();
  proxy = null;
});

const server = () => testEnv().cluster;
const entry = (extra: Record<string, unknown>, dbname = 'app1') => ({ host: server().host, port: server().port, dbname, ...extra });
const scram = (p: RunningProxy, db: string) => pgOptions(p.port, db, USERS.scram.name, USERS.scram.password);

async function start(databases: Record<string, unknown>, logs?: LogCapture): Promise<RunningProxy> {
  proxy = await startTestProxy({ databases, server_login_retry: 0 }, {}, logs);
  return proxy;
}

/** One value from the backend serving a fresh client of `db`. */
const ask = (p: RunningProxy, db: string, sql: string) => withClient(scram(p, db), async (c) => String((await c.query(sql)).rows[0]?.v));

describe('connect_query', () => {
  beforeAll(async () => {
    await adminSql(server(), 'CREATE TABLE connect_log (backend int, at timestamptz DEFAULT now()); GRANT INSERT, SELECT ON connect_log TO PUBLIC', 'app1');
  });
  afterAll(async () => {
    await adminSql(server(), 'DROP TABLE connect_log', 'app1');
  });

  it('runs once on each new server connection, before its first client', async () => {
    const p = await start({ logged: entry({ connect_query: 'INSERT INTO connect_log (backend) VALUES (pg_backend_pid())' }) });
    // Two clients at once need two servers (session mode); each sees its own backend's row already there.
    const held = [await clients.connect(scram(p, 'logged')), await clients.connect(scram(p, 'logged'))];
    const pids: number[] = [];
    for (const c of held) {
      const { rows } = await c.query<{ pid: number; n: string }>('SELECT pg_backend_pid() AS pid, (SELECT count(*) FROM connect_log WHERE backend = pg_backend_pid()) AS n');
      expect(rows[0]!.n).toBe('1');
      pids.push(rows[0]!.pid);
    }
    expect(new Set(pids).size).toBe(2);
    await clients.endAll();
    // A third client reuses a server: no new row.
    await withClient(scram(p, 'logged'), (c) => c.query('SELECT 1'));
    expect(await adminSql(server(), `SELECT count(*) FROM connect_log WHERE backend IN (${pids.join(',')})`, 'app1')).toBe('2');
    expect(await adminSql(server(), 'SELECT count(*) FROM connect_log', 'app1')).toBe('2');
  });

  it('a failing connect_query is logged and the server is used anyway, as in PgBouncer', async () => {
    const logs = new LogCapture();
    const p = await start({ broken: entry({ connect_query: 'SELECT * FROM no_such_table' }) }, logs);
    expect(await ask(p, 'broken', 'SELECT 42 AS v')).toBe('42');
    await until('the connect_query error in the log', () => logs.lines.some((l) => String(l.msg).startsWith('connect_query failed') && String(l.err).includes('no_such_table')));
  });
});

describe('client_encoding, datestyle, timezone', () => {
  const settings = "SELECT string_agg(name || '=' || setting || ' (' || source || ')', ' ' ORDER BY lower(name)) FROM pg_settings WHERE name IN ('client_encoding', 'DateStyle', 'TimeZone')";

  it("are the server session's defaults for clients that ask for none", async () => {
    const p = await start({ tokyo: entry({ client_encoding: 'LATIN1', datestyle: 'SQL, DMY', timezone: 'Asia/Tokyo' }), plain: entry({}) });
    // psql asks for no client_encoding when not interactive (node-postgres always asks for UTF8).
    const through = (db: string) => psql(conninfo(p.port, db, USERS.scram.name), settings, { PGPASSWORD: USERS.scram.password });
    expect(await through('tokyo')).toMatchObject({ code: 0, stdout: 'client_encoding=LATIN1 (client) DateStyle=SQL, DMY (client) TimeZone=Asia/Tokyo (client)' });
    expect((await through('plain')).stdout).toMatch(/^client_encoding=UTF8 \(client\) DateStyle=ISO, MDY \(configuration file\) TimeZone=\S+ \(configuration file\)$/);
  });

  it('a client that asks for its own values gets them; the next one gets the defaults back', async () => {
    const p = await start({ tokyo: entry({ timezone: 'Asia/Tokyo' }) });
    const reported = new Map<string, string>();
    const c = await clients.connect({ ...scram(p, 'tokyo'), options: '-c TimeZone=UTC' }, (name, value) => reported.set(name, value));
    expect(reported.get('TimeZone')).toBe('UTC');
    expect((await c.query('SHOW timezone')).rows[0].TimeZone).toBe('UTC');
    await clients.endAll();
    expect(await ask(p, 'tokyo', 'SELECT current_setting(\'TimeZone\') AS v')).toBe('Asia/Tokyo');
  });
});

describe('server_lifetime per database', () => {
  it("closes that database's idle servers after its own lifetime, not the global one", async () => {
    const p = await start({ short: entry({ server_lifetime: 0.5 }), long: entry({}) });
    const shortPid = await ask(p, 'short', 'SELECT pg_backend_pid() AS v');
    const longPid = await ask(p, 'long', 'SELECT pg_backend_pid() AS v');
    const alive = async (pid: string) => (await adminSql(server(), `SELECT count(*) FROM pg_stat_activity WHERE pid = ${pid}`)) === '1';
    await until('the short-lived server gone from pg_stat_activity', async () => !(await alive(shortPid)));
    expect(await alive(longPid)).toBe(true);
  });
});

describe('host lists (load_balance_hosts)', () => {
  const addr = 'SELECT host(inet_server_addr()) AS v';

  it('a dead first host: the next one serves, for the lookup and the server login', async () => {
    const dead = await freePort();
    const p = await start({ listed: entry({ host: '127.0.0.1,127.0.0.2', port: `${dead},${server().port}`, load_balance_hosts: 'disable' }) });
    expect(await ask(p, 'listed', addr)).toBe('127.0.0.2');
  });

  it('round-robin sends each new server connection to the next host', async () => {
    const p = await start({ rr: entry({ host: '127.0.0.1,127.0.0.2' }) });
    const held = [];
    for (let i = 0; i < 4; i++) held.push(await clients.connect(scram(p, 'rr'))); // one new server each (session mode)
    const seen = [];
    for (const c of held) seen.push((await c.query(addr)).rows[0].v as string);
    expect(seen).toEqual(['127.0.0.1', '127.0.0.2', '127.0.0.1', '127.0.0.2']);
  });

  it('disable stays on the first host that works', async () => {
    const p = await start({ fixed: entry({ host: '127.0.0.1,127.0.0.2', load_balance_hosts: 'disable' }) });
    const held = [];
    for (let i = 0; i < 3; i++) held.push(await clients.connect(scram(p, 'fixed')));
    const seen = new Set<string>();
    for (const c of held) seen.add((await c.query(addr)).rows[0].v as string);
    expect([...seen]).toEqual(['127.0.0.1']);
  });
});

describe("a database's own auth_query and auth_user", () => {
  // A lookup that knows every role but app_md5: a login that works with the global auth_query fails with this one.
  const altQuery = 'SELECT username, password FROM alt.lookup($1)';
  beforeAll(async () => {
    await adminSql(
      server(),
      [
        'CREATE SCHEMA alt',
        "CREATE FUNCTION alt.lookup(u text) RETURNS TABLE (username text, password text) LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$ SELECT usename::text, passwd::text FROM pg_shadow WHERE usename = u AND u <> 'app_md5' $$",
        'REVOKE ALL ON FUNCTION alt.lookup(text) FROM PUBLIC',
        `GRANT USAGE ON SCHEMA alt TO ${USERS.auth.name}, ${USERS.trust.name}`,
        `GRANT EXECUTE ON FUNCTION alt.lookup(text) TO ${USERS.auth.name}, ${USERS.trust.name}`,
      ].join('; '),
      'app2',
    );
    await adminSql(server(), `CREATE ROLE alt_auth LOGIN PASSWORD '${ALT_AUTH_PASSWORD}'`);
    await adminSql(server(), 'GRANT USAGE ON SCHEMA alt TO alt_auth; GRANT EXECUTE ON FUNCTION alt.lookup(text) TO alt_auth', 'app2');
  });
  afterAll(async () => {
    await adminSql(server(), 'DROP SCHEMA alt CASCADE', 'app2');
    await adminSql(server(), 'DROP ROLE alt_auth');
  });

  it('auth_query: that database looks users up with its own function', async () => {
    const p = await start({ alt: entry({ auth_query: altQuery }, 'app2'), usual: entry({}, 'app2') });
    const md5 = (db: string) => pgOptions(p.port, db, USERS.md5.name, USERS.md5.password);
    await expect(withClient(md5('usual'), (c) => c.query('SELECT 1'))).resolves.toBeDefined();
    const refused = await withClient(md5('alt'), (c) => c.query('SELECT 1')).catch((e: { code?: string }) => e);
    expect((refused as { code?: string }).code).toBe('28P01');
    expect(await ask(p, 'alt', 'SELECT current_user AS v')).toBe(USERS.scram.name);
  });

  it("auth_user: another role's password comes from its plaintext entry in auth_file, as in PgBouncer", async () => {
    const authFile = join(mkdtempSync(join(tmpdir(), 'pg-ingress-userlist-')), 'userlist.txt');
    writeFileSync(authFile, `"alt_auth" "${ALT_AUTH_PASSWORD}"\n`);
    proxy = await startTestProxy({ auth_file: authFile, databases: { other: entry({ auth_user: 'alt_auth', auth_query: altQuery }, 'app2') } });
    expect(await ask(proxy, 'other', 'SELECT current_user AS v')).toBe(USERS.scram.name);
    const lookups = await adminSql(server(), "SELECT DISTINCT usename FROM pg_stat_activity WHERE application_name = 'pg-ingress auth_query' AND datname = 'app2'");
    expect(lookups.split('\n')).toContain('alt_auth');
  });

  it('auth_user: that database runs its lookup as another role (here let in by trust, without a password)', async () => {
    const p = await start({ other: entry({ auth_user: USERS.trust.name, auth_query: altQuery }, 'app2') });
    expect(await ask(p, 'other', 'SELECT current_user AS v')).toBe(USERS.scram.name);
    const lookups = await adminSql(server(), "SELECT DISTINCT usename FROM pg_stat_activity WHERE application_name = 'pg-ingress auth_query' AND datname = 'app2'");
    expect(lookups.split('\n')).toContain(USERS.trust.name);
  });
});
