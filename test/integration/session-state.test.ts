// Transaction pooling: a session setting a client changes with SET (one that
// is not a tracked parameter) is never seen by other clients, and stays in
// force for that client on whatever server it gets next. The server says what
// changed (CommandComplete SET/RESET, then pg_settings); no SQL is parsed.
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

const connect = (port: number): Promise<pg.Client> => open.connect(pgOptions(port, 'app1', scram.name, scram.password));

const workMem = async (c: pg.Client): Promise<string> => (await c.query("SELECT current_setting('work_mem') AS v")).rows[0].v as string;

describe('untracked session settings in transaction mode', () => {
  it('a SET is never visible to 20 other clients, and stays with the client that set it, on a pool of 1', async () => {
    proxy = await startTestProxy({ pool_mode: 'transaction', default_pool_size: 1 });
    const setter = await connect(proxy.port);
    const others = await Promise.all(Array.from({ length: 20 }, () => connect(proxy!.port)));
    const defaultValue = await workMem(others[0]!);
    expect(defaultValue).not.toBe('77MB');
    await setter.query("SET work_mem = '77MB'");
    // Everyone shares the one server, in turn, under contention.
    const seen = await Promise.all(others.map((c) => workMem(c)));
    expect(seen.every((v) => v === defaultValue)).toBe(true);
    expect(await workMem(setter)).toBe('77MB');
    const again = await Promise.all([workMem(setter), ...others.slice(0, 5).map((c) => workMem(c))]);
    expect(again).toEqual(['77MB', defaultValue, defaultValue, defaultValue, defaultValue, defaultValue]);
  });

  it('when reading the settings fails (the SET itself makes our query time out), the server is closed, never handed on with the SET', async () => {
    proxy = await startTestProxy({ pool_mode: 'transaction', default_pool_size: 1 });
    const other = await connect(proxy.port);
    const timeout = async (): Promise<string> => (await other.query("SELECT current_setting('statement_timeout') AS v")).rows[0].v as string;
    const defaultValue = await timeout();
    for (let i = 0; i < 5; i++) {
      const setter = await connect(proxy.port);
      // The proxy's pg_settings read after the SET runs under it and usually fails: 1 ms is tight.
      await setter.query("SET statement_timeout = '1ms'").catch(() => undefined);
      await setter.end().catch(() => undefined);
      // Whichever way it went (read in time, or failed and closed), the next client has the default.
      expect(await timeout()).toBe(defaultValue);
    }
  });

  it('with the default pool size too: the clients after the setter get its server (LIFO reuse) and never its setting', async () => {
    proxy = await startTestProxy({ pool_mode: 'transaction' }); // default_pool_size 20
    const setter = await connect(proxy.port);
    const others = [];
    for (let i = 0; i < 10; i++) others.push(await connect(proxy.port));
    const defaultValue = await workMem(others[0]!);
    await setter.query("SET work_mem = '76MB'");
    const setterPid = (await setter.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    let sameBackend = 0;
    for (const c of others) {
      const { rows } = await c.query("SELECT pg_backend_pid() AS pid, current_setting('work_mem') AS v");
      if (rows[0].pid === setterPid) sameBackend++;
      expect(rows[0].v).toBe(defaultValue);
    }
    expect(sameBackend).toBeGreaterThan(0); // the setter's backend did serve others: the check above meant something
    expect(await workMem(setter)).toBe('76MB');
  });

  it('follows the client to another server, and RESET / RESET ALL undo it', async () => {
    proxy = await startTestProxy({ pool_mode: 'transaction', default_pool_size: 2 });
    const setter = await connect(proxy.port);
    const holder = await connect(proxy.port);
    await setter.query("SET work_mem = '78MB'");
    const firstPid = (await setter.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    // Hold that server in a transaction so the setter's next query needs the other one.
    await holder.query('BEGIN');
    const holderPid = (await holder.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const onOther = await setter.query("SELECT pg_backend_pid() AS pid, current_setting('work_mem') AS v");
    if (holderPid === firstPid) expect(onOther.rows[0].pid).not.toBe(firstPid);
    expect(onOther.rows[0].v).toBe('78MB');
    await holder.query('COMMIT');
    await setter.query('RESET work_mem');
    const reset = await workMem(setter);
    expect(reset).not.toBe('78MB');
    await setter.query("SET work_mem = '79MB'; SET maintenance_work_mem = '80MB'");
    expect(await workMem(setter)).toBe('79MB');
    await setter.query('RESET ALL');
    expect(await workMem(setter)).toBe(reset);
    expect(await workMem(holder)).toBe(reset);
  });

  it('a SET rolled back with its transaction is not kept', async () => {
    proxy = await startTestProxy({ pool_mode: 'transaction', default_pool_size: 1 });
    const c = await connect(proxy.port);
    const before = await workMem(c);
    await c.query('BEGIN');
    await c.query("SET work_mem = '81MB'");
    await c.query('ROLLBACK');
    expect(await workMem(c)).toBe(before);
  });

  it('SET ROLE stays with the client that ran it and never reaches another client', async () => {
    await adminSql(testEnv().cluster, "DO $$ BEGIN CREATE ROLE session_state_sub NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$; GRANT session_state_sub TO app_scram", 'app1');
    proxy = await startTestProxy({ pool_mode: 'transaction', default_pool_size: 1 });
    const setter = await connect(proxy.port);
    const other = await connect(proxy.port);
    await setter.query('SET ROLE session_state_sub');
    const who = async (c: pg.Client): Promise<string> => (await c.query('SELECT current_user AS u')).rows[0].u as string;
    expect(await who(other)).toBe(scram.name);
    expect(await who(setter)).toBe('session_state_sub');
    expect(await who(other)).toBe(scram.name);
    await setter.query('RESET ROLE');
    expect(await who(setter)).toBe(scram.name);
  });
});
