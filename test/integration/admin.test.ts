// The admin console (database `pgbouncer`) through psql and node-postgres:
// who may log in, PgBouncer's SHOW commands and columns, and clean errors.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { RunningProxy } from '../../src/proxy.js';
import { USERS } from '../harness/postgres.js';
import { connectError, conninfo, pgOptions, psql, startTestProxy, withClient } from '../harness/proxy.js';

const { scram, md5, trust } = USERS;
let proxy: RunningProxy;
let app: pg.Client;

beforeAll(async () => {
  proxy = await startTestProxy({ pool_mode: 'transaction', admin_users: [scram.name], stats_users: [md5.name], auth_dbname: 'app1' });
  app = new pg.Client({ ...pgOptions(proxy.port, 'app2', scram.name, scram.password), application_name: 'billing' });
  await app.connect();
  for (let i = 0; i < 3; i++) await app.query('SELECT 1');
});

afterAll(async () => {
  await app?.end().catch(() => undefined);
  await proxy?.close();
});

const admin = (): pg.ClientConfig => pgOptions(proxy.port, 'pgbouncer', scram.name, scram.password);
const console_ = (sql: string, user: { name: string; password: string } = scram) =>
  psql(conninfo(proxy.port, 'pgbouncer', user.name), sql, { PGPASSWORD: user.password });

/** Rows of a SHOW command as objects, through node-postgres's simple query protocol. */
async function show(what: string): Promise<{ fields: string[]; rows: Record<string, string | null>[] }> {
  return withClient(admin(), async (c) => {
    const r = await c.query(`SHOW ${what}`);
    return { fields: r.fields.map((f) => f.name), rows: r.rows as Record<string, string | null>[] };
  });
}

describe('admin console logins', () => {
  it('lets an admin_users user in with psql and answers SHOW POOLS', async () => {
    const r = await console_('SHOW POOLS');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // -A -t: database|user|cl_active|cl_waiting|…|pool_mode|load_balance_hosts (NULL: one host)
    const line = r.stdout.split('\n').find((l) => l.startsWith('app2|app_scram|'));
    expect(line?.split('|')).toEqual(['app2', 'app_scram', '1', '0', '0', '0', '0', '0', '0', '1', '0', '0', '0', '0', '0', 'transaction', '']);
  });

  it('lets a stats_users user (md5 verifier) run SHOW, but not admin commands', async () => {
    expect((await console_('SHOW VERSION', md5)).stdout).toMatch(/^pg-ingress \d+\.\d+\.\d+/);
    const r = await console_('RELOAD', md5);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('admin access needed');
  });

  it('without auth_dbname, looks console users up in the first database entry (the shipped configuration works as it is)', async () => {
    const plain = await startTestProxy({ admin_users: [scram.name] }); // databases app1, app2; no auth_dbname
    try {
      const r = await psql(conninfo(plain.port, 'pgbouncer', scram.name), 'SHOW VERSION', { PGPASSWORD: scram.password });
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(/^pg-ingress /);
    } finally {
      await plain.close();
    }
  });

  it('with no database entry to look users up in, the console login says what to set', async () => {
    const none = await startTestProxy({ admin_users: [scram.name], databases: {} });
    try {
      const err = await connectError(pgOptions(none.port, 'pgbouncer', scram.name, scram.password));
      expect(err).toMatchObject({ code: '08006', severity: 'FATAL' });
      expect(err.message).toContain('no database entry to run auth_query in');
    } finally {
      await none.close();
    }
  });

  it('refuses a user in neither list with 42501, after authenticating', async () => {
    const err = await connectError(pgOptions(proxy.port, 'pgbouncer', trust.name, trust.password));
    expect(err).toMatchObject({ code: '42501', severity: 'FATAL' });
    expect(err.message).toBe('permission denied for database "pgbouncer"');
  });

  it('refuses a wrong password as for any database, 28P01', async () => {
    const err = await connectError(pgOptions(proxy.port, 'pgbouncer', scram.name, 'wrong'));
    expect(err.code).toBe('28P01');
  });
});

describe('SHOW commands', () => {
  it('POOLS has PgBouncer’s columns', async () => {
    const { fields } = await show('POOLS');
    expect(fields).toEqual(['database', 'user', 'cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active', 'sv_active_cancel', 'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login', 'maxwait', 'maxwait_us', 'pool_mode', 'load_balance_hosts']);
  });

  it('STATS counts the queries and bytes of the pool’s clients', async () => {
    const { fields, rows } = await show('STATS');
    expect(fields.slice(0, 4)).toEqual(['database', 'total_server_assignment_count', 'total_xact_count', 'total_query_count']);
    expect(fields).toContain('avg_query_time');
    const app2 = rows.find((r) => r.database === 'app2')!;
    expect(Number(app2.total_query_count)).toBe(3);
    expect(Number(app2.total_xact_count)).toBe(3);
    expect(Number(app2.total_received)).toBeGreaterThan(0);
    expect(Number(app2.total_sent)).toBeGreaterThan(0);
    const totals = await show('STATS_TOTALS');
    expect(totals.fields).toEqual(['database', 'server_assignment_count', 'xact_count', 'query_count', 'bytes_received', 'bytes_sent', 'xact_time', 'query_time', 'wait_time', 'client_parse_count', 'server_parse_count', 'bind_count']);
  });

  it('CLIENTS lists the application client, SERVERS its pooled server', async () => {
    const clients = await show('CLIENTS');
    expect(clients.fields).toEqual(['type', 'user', 'database', 'replication', 'state', 'addr', 'port', 'local_addr', 'local_port', 'connect_time', 'request_time', 'wait', 'wait_us', 'close_needed', 'ptr', 'link', 'remote_pid', 'tls', 'application_name', 'prepared_statements', 'id']);
    const billing = clients.rows.find((r) => r.application_name === 'billing');
    // Between transactions it holds no server: idle, as PgBouncer 1.25 shows it.
    expect(billing).toMatchObject({ type: 'C', user: scram.name, database: 'app2', replication: 'none', state: 'idle', addr: '127.0.0.1' });
    expect(billing!.tls).toMatch(/^TLSv1\.[23]\//);
    const servers = await show('SERVERS');
    const server = servers.rows.find((r) => r.database === 'app2' && r.user === scram.name);
    expect(server).toMatchObject({ type: 'S', state: 'idle', link: '' });
    expect(Number(server!.remote_pid)).toBeGreaterThan(0);
  });

  it('DATABASES, LISTS, VERSION and HELP answer', async () => {
    const dbs = await show('DATABASES');
    expect(dbs.rows.map((r) => r.name)).toEqual(['app1', 'app2']);
    expect(dbs.rows.find((r) => r.name === 'app2')).toMatchObject({ database: 'app2', pool_size: '20', current_connections: '1' });
    const lists = await show('LISTS');
    expect(lists.fields).toEqual(['list', 'items']);
    expect(lists.rows.find((r) => r.list === 'pools')?.items).toBe('1');
    expect(lists.rows.find((r) => r.list === 'used_clients')?.items).toBe('1');
    const help = await console_('SHOW HELP');
    expect(help.code).toBe(0);
    expect(help.stderr).toContain('SHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION');
  });

  it('CONFIG shows settings but never a password', async () => {
    const r = await console_('SHOW CONFIG');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('pool_mode|transaction|session|yes');
    expect(r.stdout).toContain('listen_port|0|6432|no'); // restart only
    expect(r.stdout).toContain(`admin_users|${scram.name}||yes`);
    expect(r.stdout).not.toContain('auth_password');
    expect(r.stdout).not.toContain(USERS.auth.password);
  });
});

describe('bad input gets a clean error and the console stays usable', () => {
  it('an unknown command: 42601, then the next query works', async () => {
    await withClient(admin(), async (c) => {
      await expect(c.query('SHOW NONSENSE')).rejects.toMatchObject({ code: '42601', message: "invalid command 'SHOW NONSENSE', use SHOW HELP;" });
      await expect(c.query('SELECT 1')).rejects.toMatchObject({ code: '42601' });
      await expect(c.query('')).resolves.toBeDefined();
      expect((await c.query('SHOW VERSION')).rows).toHaveLength(1);
    });
  });

  it('SUSPEND (not implemented): 0A000 with the reason', async () => {
    await withClient(admin(), async (c) => {
      await expect(c.query('SUSPEND')).rejects.toMatchObject({ code: '0A000', message: 'SUSPEND is not supported by pg-ingress' });
    });
  });

  it('a control with bad arguments: 42601 naming the usage', async () => {
    await withClient(admin(), async (c) => {
      await expect(c.query('DISABLE')).rejects.toMatchObject({ code: '42601', message: 'DISABLE needs one database name' });
      await expect(c.query('SHUTDOWN NOW')).rejects.toMatchObject({ code: '42601' });
      await expect(c.query('KILL_CLIENT abc')).rejects.toMatchObject({ code: '42601' });
    });
  });

  it('the extended protocol: 0A000, then simple queries work again', async () => {
    await withClient(admin(), async (c) => {
      await expect(c.query({ text: 'SHOW POOLS', values: [1] })).rejects.toMatchObject({ code: '0A000', message: 'the admin console supports only the simple query protocol' });
      await expect(c.query({ name: 'prepared', text: 'SHOW POOLS' })).rejects.toMatchObject({ code: '0A000' });
      expect((await c.query('SHOW LISTS')).rows.length).toBeGreaterThan(5);
    });
  });

  it('psql reports an unknown command with its message and exits non-zero, without hanging', async () => {
    const started = Date.now();
    const r = await console_('SHOW BOGUS');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("invalid command 'SHOW BOGUS', use SHOW HELP;");
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
