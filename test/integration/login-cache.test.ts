// Logins need no server in transaction mode once the pool has logged in once:
// the pool's cached welcome (session defaults, superuser status) answers them,
// as PgBouncer's does, so a login never waits behind busy clients.
import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { adminSql, USERS } from '../harness/postgres.js';
import { OpenClients, pgOptions, startTestProxy, testEnv } from '../harness/proxy.js';
import type { RunningProxy } from '../../src/proxy.js';

const { scram } = USERS;
let proxy: RunningProxy | null = null;
const open = new OpenClients();

afterEach(async () => {
  await open.endAll();
  await proxy?.close();
  proxy = null;
});

async function client(port: number, extra: Partial<pg.ClientConfig> = {}): Promise<{ c: pg.Client; status: Map<string, string> }> {
  const status = new Map<string, string>();
  const c = await open.connect({ ...pgOptions(port, 'app1', scram.name, scram.password), ...extra }, (name, value) => status.set(name, value));
  return { c, status };
}

const backendsOfScram = async (): Promise<number> => Number(await adminSql(testEnv().cluster, `SELECT count(*) FROM pg_stat_activity WHERE usename = '${scram.name}' AND datname = 'app1' AND application_name LIKE 'login-cache%'`));

describe('transaction-mode logins without a server', () => {
  it('complete while the only server is held in a transaction, and report what a server would', async () => {
    proxy = await startTestProxy({ pool_mode: 'transaction', default_pool_size: 1 });
    const first = await client(proxy.port, { application_name: 'login-cache-first' }); // the pool's first login goes upstream
    await first.c.query('BEGIN'); // holds the only server
    // With the server busy, a new login can only complete if nothing upstream is needed.
    const second = await client(proxy.port, { application_name: 'login-cache-second' });
    expect(second.status.get('application_name')).toBe('login-cache-second');
    for (const name of ['server_version', 'client_encoding', 'DateStyle', 'TimeZone', 'integer_datetimes', 'standard_conforming_strings', 'is_superuser']) {
      expect(second.status.get(name), name).toBe(first.status.get(name));
    }
    // Its first query waits for the server as any query does, and then runs with its own application_name.
    const q = second.c.query("SELECT current_setting('application_name') AS app");
    await first.c.query('COMMIT');
    expect((await q).rows[0].app).toBe('login-cache-second');
    expect(await backendsOfScram()).toBeLessThanOrEqual(1);
  });

  it('with the default pool size: 20 servers busy in transactions, a 21st login completes and PostgreSQL sees no 21st backend', async () => {
    proxy = await startTestProxy({ pool_mode: 'transaction' }); // default_pool_size 20
    const busy = [];
    for (let i = 0; i < 20; i++) busy.push((await client(proxy.port, { application_name: `login-cache-busy-${i}` })).c);
    for (const c of busy) await c.query('BEGIN; SELECT 1'); // each holds a server
    expect(await backendsOfScram()).toBe(20);
    const late = await client(proxy.port, { application_name: 'login-cache-late' }); // the pool is full: only the cache can answer
    expect(late.status.get('application_name')).toBe('login-cache-late');
    expect(await backendsOfScram()).toBe(20); // seen from PostgreSQL: the login took no server
    const q = late.c.query('SELECT 42 AS n');
    await busy[0]!.query('COMMIT');
    expect((await q).rows[0].n).toBe(42);
    for (const c of busy.slice(1)) await c.query('COMMIT');
  });

  it('still go upstream when a value needs the server to check it (an unknown TimeZone is refused as PostgreSQL refuses it)', async () => {
    proxy = await startTestProxy({ pool_mode: 'transaction', default_pool_size: 1 });
    await client(proxy.port, { application_name: 'login-cache-warm' });
    const bad = new pg.Client({ ...pgOptions(proxy.port, 'app1', scram.name, scram.password), options: '-c TimeZone=Nowhere/Atlantis' });
    bad.on('error', () => undefined);
    const err = await bad.connect().then(
      () => null,
      (e: { code?: string }) => e,
    );
    await bad.end().catch(() => undefined);
    expect(err?.code).toBe('22023');
  });

  it('refuse a superuser from the cache too', async () => {
    proxy = await startTestProxy({ pool_mode: 'transaction', default_pool_size: 1 });
    const opts = pgOptions(proxy.port, 'app1', USERS.admin.name, USERS.admin.password);
    for (let i = 0; i < 2; i++) {
      const c = new pg.Client(opts);
      c.on('error', () => undefined);
      const err = await c.connect().then(
        () => null,
        (e: { code?: string }) => e,
      );
      await c.end().catch(() => undefined);
      expect(err?.code, `login ${i + 1}`).toBe('42501');
    }
  });
});

describe('named statements behave as PostgreSQL\'s (transaction pooling)', () => {
  it('after a failed Parse, a Bind of that name gets PostgreSQL\'s own 26000, not a silent re-prepare', async () => {
    proxy = await startTestProxy({ pool_mode: 'transaction', default_pool_size: 1 });
    const { c } = await client(proxy.port, { application_name: 'login-cache-stmt' });
    const conn = (c as unknown as { connection: pg.Connection & { bind(o: object): void; execute(o: object): void; sync(): void } }).connection;
    // node-postgres rejects at the ErrorResponse; the Bind below must follow the failed Parse's ReadyForQuery.
    const ready = new Promise((resolve) => conn.once('readyForQuery', resolve));
    const failed = await c.query({ name: 'bad', text: 'SELECT nosuchcolumn', values: [] }).then(
      () => null,
      (e: { code?: string }) => e,
    );
    expect(failed?.code).toBe('42703');
    await ready;
    // A raw Bind/Execute/Sync of "bad": node-postgres would Parse again, so write the messages by hand.
    const error = new Promise<{ code?: string; message?: string }>((resolve) => conn.once('errorMessage', (m: { code?: string; message?: string }) => resolve(m)));
    conn.bind({ statement: 'bad', values: [] });
    conn.execute({ portal: '', rows: 0 });
    conn.sync();
    const e = await error;
    expect(e.code).toBe('26000');
    expect(e.message).toBe('prepared statement "bad" does not exist');
  });
});
