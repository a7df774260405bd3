// The admin console's SHOW commands added for issue 10 and PgBouncer 1.25's
// columns, through psql (--csv, header included): each command's columns by
// name and order, and one value checked against what the test sees itself
// (its own socket, its own queries, pg_stat_activity, this process's memory).
import { pbkdf2Sync, createHmac } from 'node:crypto';
import { execFile } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { RunningProxy } from '../../src/proxy.js';
import { adminSql, USERS } from '../harness/postgres.js';
import { conninfo, pgOptions, startTestProxy, testEnv } from '../harness/proxy.js';

const { scram, md5, trust } = USERS;
let proxy: RunningProxy;
/** Holds a server: it stays inside a transaction. */
let inTx: pg.Client;
/** Idle between transactions, on app2. */
let idle: pg.Client;

beforeAll(async () => {
  proxy = await startTestProxy({
    pool_mode: 'transaction',
    admin_users: [scram.name],
    stats_users: [md5.name],
    auth_dbname: 'app1',
    server_lifetime: 1800,
    max_db_client_connections: 50,
    users: { [trust.name]: { pool_size: 3, max_user_connections: 7 } },
    databases: {
      app1: `host=${testEnv().cluster.host} port=${testEnv().cluster.port} dbname=app1`,
      app2: `host=${testEnv().cluster.host} port=${testEnv().cluster.port} dbname=app2`,
      // A host list: SHOW DATABASES names its load_balance_hosts.
      listed: `host=${testEnv().cluster.host},127.0.0.2 port=${testEnv().cluster.port} dbname=app1 load_balance_hosts=disable`,
    },
  });
  inTx = new pg.Client({ ...pgOptions(proxy.port, 'app1', scram.name, scram.password), application_name: 'in-tx' });
  idle = new pg.Client({ ...pgOptions(proxy.port, 'app2', scram.name, scram.password), application_name: 'idle' });
  await Promise.all([inTx.connect(), idle.connect()]);
  await inTx.query('BEGIN');
  await inTx.query('SELECT 1');
  // A named statement: renamed and prepared on the server it ran on.
  await idle.query({ name: 'one', text: 'SELECT $1::int AS n', values: [1] });
});

afterAll(async () => {
  await inTx?.end().catch(() => undefined);
  await idle?.end().catch(() => undefined);
  await proxy?.close();
});

interface Table {
  code: number;
  stderr: string;
  columns: string[];
  rows: Record<string, string>[];
  raw: string;
}

/** Runs one console command with psql --csv as `user` (an empty field is NULL or ''). */
function consoleCsv(sql: string, user: { name: string; password: string } = scram): Promise<Table> {
  return new Promise((resolve) => {
    execFile(
      'psql',
      ['-X', '--csv', '-v', 'ON_ERROR_STOP=1', '-d', conninfo(proxy.port, 'pgbouncer', user.name), '-c', sql],
      { env: { PATH: process.env.PATH, PGCONNECT_TIMEOUT: '10', PGPASSWORD: user.password }, timeout: 20_000 },
      (err, stdout, stderr) => {
        const [header = [], ...lines] = parseCsv(stdout);
        const rows = lines.map((cells) => Object.fromEntries(header.map((h, i) => [h, cells[i] ?? ''])));
        resolve({ code: err ? 1 : 0, stderr: stderr.trim(), columns: header, rows, raw: stdout });
      },
    );
  });
}

/** RFC 4180 as psql writes it: quotes around fields with commas, quotes or newlines. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') row.push(field), (field = '');
    else if (ch === '\n') row.push(field), rows.push(row), (row = []), (field = '');
    else field += ch;
  }
  if (field !== '' || row.length > 0) rows.push([...row, field]);
  return rows;
}

const localPort = (c: pg.Client): number => (c as unknown as { connection: { stream: { localPort: number } } }).connection.stream.localPort;
const num = (v: string | undefined): number => Number(v);

const SOCKET_COLUMNS = ['type', 'user', 'database', 'replication', 'state', 'addr', 'port', 'local_addr', 'local_port', 'connect_time', 'request_time', 'wait', 'wait_us', 'close_needed', 'ptr', 'link', 'remote_pid', 'tls', 'application_name', 'prepared_statements', 'id'];

describe('SHOW USERS', () => {
  it('lists the user who logged in with its connections, and a configured user with its overrides', async () => {
    const t = await consoleCsv('SHOW USERS');
    expect(t.columns).toEqual(['name', 'pool_size', 'reserve_pool_size', 'pool_mode', 'max_user_connections', 'current_connections', 'max_user_client_connections', 'current_client_connections']);
    const me = t.rows.find((r) => r.name === scram.name)!;
    expect(num(me.current_client_connections)).toBe(2);
    // Its server connections are real backends of that user.
    const servers = (await consoleCsv('SHOW SERVERS')).rows.filter((r) => r.user === scram.name);
    expect(num(me.current_connections)).toBe(servers.length);
    const pids = servers.map((s) => s.remote_pid).join(',');
    expect(await adminSql(testEnv().cluster, `SELECT count(*) FROM pg_stat_activity WHERE usename = '${scram.name}' AND pid IN (${pids})`)).toBe(String(servers.length));
    expect(t.rows.find((r) => r.name === trust.name)).toEqual({ name: trust.name, pool_size: '3', reserve_pool_size: '', pool_mode: '', max_user_connections: '7', current_connections: '0', max_user_client_connections: '0', current_client_connections: '0' });
  });
});

describe('SHOW TOTALS', () => {
  it('counts the queries run since the last look, in PgBouncer’s rows', async () => {
    const before = await consoleCsv('SHOW TOTALS');
    expect(before.columns).toEqual(['name', 'value']);
    const figures = ['server_assignment_count', 'xact_count', 'query_count', 'client_bytes', 'server_bytes', 'xact_time', 'query_time', 'wait_time', 'ps_client_parse_count', 'ps_server_parse_count', 'ps_bind_count'];
    expect(before.rows.map((r) => r.name)).toEqual([...figures.map((f) => `total_${f}`), ...figures.map((f) => `avg_${f}`)]);
    const value = (t: Table, name: string): number => num(t.rows.find((r) => r.name === name)?.value);
    for (let i = 0; i < 4; i++) await idle.query('SELECT 1');
    const after = await consoleCsv('SHOW TOTALS');
    expect(value(after, 'total_query_count') - value(before, 'total_query_count')).toBe(4);
    expect(value(after, 'total_xact_count') - value(before, 'total_xact_count')).toBe(4);
    expect(value(after, 'total_client_bytes')).toBeGreaterThan(value(before, 'total_client_bytes'));
    // The sum of SHOW STATS over the databases.
    const stats = await consoleCsv('SHOW STATS');
    expect(stats.rows.reduce((n, r) => n + num(r.total_query_count), 0)).toBe(value(after, 'total_query_count'));
  });
});

describe('SHOW MEM', () => {
  it('counts the objects SHOW LISTS counts, and this process’s memory in bytes', async () => {
    const t = await consoleCsv('SHOW MEM');
    expect(t.columns).toEqual(['name', 'size', 'used', 'free', 'memtotal']);
    const row = (name: string): Record<string, string> => t.rows.find((r) => r.name === name)!;
    const lists = Object.fromEntries((await consoleCsv('SHOW LISTS')).rows.map((r) => [r.list, num(r.items)]));
    expect(num(row('client_cache').used)).toBe(lists.used_clients);
    expect(num(row('pool_cache').used)).toBe(lists.pools);
    expect(num(row('server_cache').used)).toBe(lists.used_servers);
    expect(num(row('server_prepared_statement_cache').used)).toBeGreaterThanOrEqual(1);
    expect(row('client_cache')).toMatchObject({ size: '', free: '0', memtotal: '' });
    // The proxy runs in this process: its RSS is ours, give or take what moved in between.
    const rss = num(row('process_rss').used);
    expect(rss / process.memoryUsage().rss).toBeGreaterThan(0.5);
    expect(rss / process.memoryUsage().rss).toBeLessThan(2);
    for (const r of t.rows.filter((r) => r.size === '1')) expect(num(r.memtotal)).toBe(num(r.used) + num(r.free));
    expect(t.rows.map((r) => r.name)).toContain('v8_old_space');
  });
});

/** The inode of the TCP connection from `remotePort` to `localPort` on this host (/proc/net/tcp). */
function tcpInode(localPort: number, remotePort: number): string | null {
  const hex = (p: number): string => p.toString(16).toUpperCase().padStart(4, '0');
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1]?.endsWith(`:${hex(localPort)}`) && f[2]?.endsWith(`:${hex(remotePort)}`)) return f[9]!;
    }
  }
  return null;
}

describe('SHOW FDS', () => {
  it('lists the client’s socket: its port as the client sees it, and the fd of that very socket', async () => {
    const t = await consoleCsv('SHOW FDS');
    expect(t.code).toBe(0);
    expect(t.columns).toEqual(['fd', 'task', 'user', 'database', 'addr', 'port', 'cancel', 'link', 'client_encoding', 'std_strings', 'datestyle', 'timezone', 'password', 'scram_client_key', 'scram_server_key']);
    expect(t.stderr).toContain('cannot hand them to another process (no online restart)');
    const mine = t.rows.find((r) => r.task === 'client' && num(r.port) === localPort(inTx))!;
    expect(mine).toMatchObject({ user: scram.name, database: 'app1', addr: '127.0.0.1', client_encoding: 'UTF8' });
    // The proxy runs in this process: the fd is the socket the kernel has for that connection.
    expect(readlinkSync(`/proc/self/fd/${mine.fd}`)).toBe(`socket:[${tcpInode(proxy.port, localPort(inTx))}]`);
    // Inside its transaction it holds a server: link is that server's fd.
    const server = t.rows.find((r) => r.task === 'server' && r.fd === mine.link)!;
    expect(server).toMatchObject({ user: scram.name, database: 'app1', port: String(testEnv().cluster.port) });
    for (const r of t.rows.filter((r) => r.task !== 'pooler')) expect([r.password, r.scram_client_key, r.scram_server_key, r.cancel]).toEqual(['', '', '', '']);
    // The listening socket, as PgBouncer lists it (cancel 0: a listener has no key).
    expect(t.rows.find((r) => r.task === 'pooler')).toMatchObject({ port: String(proxy.port), cancel: '0', password: '' });
  });

  it('refuses stats_users with 42501 and says what is needed', async () => {
    const r = await consoleCsv('SHOW FDS', md5);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('admin access needed');
    expect(r.stderr).toContain('admin_users');
    const err = await new Promise<{ code?: string }>((resolve) => {
      const c = new pg.Client(pgOptions(proxy.port, 'pgbouncer', md5.name, md5.password));
      c.connect()
        .then(() => c.query('SHOW FDS'))
        .then(() => resolve({}), (e: { code?: string }) => resolve(e))
        .finally(() => void c.end().catch(() => undefined));
    });
    expect(err.code).toBe('42501');
  });
});

describe('SHOW SOCKETS and ACTIVE_SOCKETS', () => {
  it('list every connection with PgBouncer’s list names and the debug columns', async () => {
    const debug = ['recv_pos', 'pkt_pos', 'pkt_remain', 'send_pos', 'send_remain', 'pkt_avail', 'send_avail'];
    const t = await consoleCsv('SHOW SOCKETS');
    expect(t.columns).toEqual([...SOCKET_COLUMNS, ...debug]);
    expect(t.rows.find((r) => num(r.port) === localPort(inTx))).toMatchObject({ type: 'C', state: 'cl_active', application_name: 'in-tx' });
    expect(t.rows.find((r) => r.type === 'S' && r.link !== '')).toMatchObject({ state: 'sv_active', database: 'app1' });
    const active = await consoleCsv('SHOW ACTIVE_SOCKETS');
    expect(active.columns).toEqual(t.columns);
    // Nothing is buffered while everyone is idle: a socket listed here holds bytes.
    for (const r of active.rows) expect(num(r.pkt_avail) + num(r.send_avail)).toBeGreaterThan(0);
  });
});

describe('SHOW CLIENTS and SERVERS', () => {
  it('show the server’s prepared statements and link the pair inside a transaction', async () => {
    const clients = await consoleCsv('SHOW CLIENTS');
    expect(clients.columns).toEqual(SOCKET_COLUMNS);
    const client = clients.rows.find((r) => num(r.port) === localPort(inTx))!;
    expect(client).toMatchObject({ state: 'active', replication: 'none', close_needed: '0' });
    const servers = await consoleCsv('SHOW SERVERS');
    expect(servers.columns).toEqual(SOCKET_COLUMNS);
    const linked = servers.rows.find((r) => r.ptr === client.link)!;
    expect(linked.link).toBe(client.ptr);
    // pg_stat_activity sees that backend inside the transaction, from our server socket's port.
    expect(await adminSql(testEnv().cluster, `SELECT state || ' ' || client_port FROM pg_stat_activity WHERE pid = ${linked.remote_pid}`)).toBe(`idle in transaction ${linked.local_port}`);
    const app2 = servers.rows.find((r) => r.database === 'app2')!;
    expect(num(app2.prepared_statements)).toBe(1);
  });
});

describe('SHOW DATABASES, POOLS and LISTS', () => {
  it('DATABASES has PgBouncer 1.25’s columns, with lifetimes, limits and client counts', async () => {
    const t = await consoleCsv('SHOW DATABASES');
    expect(t.columns).toEqual(['name', 'host', 'port', 'database', 'force_user', 'pool_size', 'min_pool_size', 'reserve_pool_size', 'server_lifetime', 'pool_mode', 'load_balance_hosts', 'max_connections', 'current_connections', 'max_client_connections', 'current_client_connections', 'paused', 'disabled']);
    expect(t.rows.find((r) => r.name === 'app2')).toMatchObject({ server_lifetime: '1800', load_balance_hosts: '', max_client_connections: '50', current_client_connections: '1', reserve_pool_size: '0' });
    expect(t.rows.find((r) => r.name === 'app1')?.current_client_connections).toBe('1');
    expect(t.rows.find((r) => r.name === 'listed')).toMatchObject({ load_balance_hosts: 'disable', current_client_connections: '0' });
  });

  it('LISTS names PgBouncer’s lists in its order; users is what SHOW USERS lists', async () => {
    const t = await consoleCsv('SHOW LISTS');
    expect(t.rows.map((r) => r.list)).toEqual(['databases', 'users', 'peers', 'pools', 'peer_pools', 'free_clients', 'used_clients', 'login_clients', 'free_servers', 'used_servers', 'dns_names', 'dns_zones', 'dns_queries', 'dns_pending']);
    expect(num(t.rows.find((r) => r.list === 'users')?.items)).toBe((await consoleCsv('SHOW USERS')).rows.length);
  });
});

describe('SHOW PEERS, PEER_POOLS, DNS_HOSTS, DNS_ZONES', () => {
  it.each([
    ['PEERS', ['peer_id', 'host', 'port', 'pool_size']],
    ['PEER_POOLS', ['peer_id', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active_cancel', 'sv_login']],
    ['DNS_HOSTS', ['hostname', 'ttl', 'addrs']],
    ['DNS_ZONES', ['zonename', 'serial', 'count']],
  ])('%s: PgBouncer’s columns, no rows (no peering, no DNS cache)', async (what, columns) => {
    const t = await consoleCsv(`SHOW ${what}`);
    expect(t.code).toBe(0);
    expect(t.columns).toEqual(columns);
    expect(t.rows).toEqual([]);
  });
});

describe('no secret in any SHOW output', () => {
  it('no password, verifier or SCRAM key of any user appears', async () => {
    const verifier = await adminSql(testEnv().cluster, `SELECT rolpassword FROM pg_authid WHERE rolname = '${scram.name}'`);
    const [, iterSalt, keys] = verifier.split('$');
    const [iterations, salt] = iterSalt!.split(':');
    const [storedKey, serverKey] = keys!.split(':');
    const salted = pbkdf2Sync(scram.password, Buffer.from(salt!, 'base64'), Number(iterations), 32, 'sha256');
    const clientKey = createHmac('sha256', salted).update('Client Key').digest();
    const md5Hash = await adminSql(testEnv().cluster, `SELECT rolpassword FROM pg_authid WHERE rolname = '${md5.name}'`);
    const secrets = [
      ...Object.values(USERS).map((u) => u.password),
      storedKey!,
      serverKey!,
      md5Hash,
      md5Hash.slice(3),
      clientKey.toString('base64'),
      clientKey.toString('hex'),
      Buffer.from(storedKey!, 'base64').toString('hex'),
      Buffer.from(serverKey!, 'base64').toString('hex'),
    ];
    const commands = ['CONFIG', 'DATABASES', 'POOLS', 'CLIENTS', 'SERVERS', 'USERS', 'FDS', 'SOCKETS', 'ACTIVE_SOCKETS', 'LISTS', 'MEM', 'STATS', 'TOTALS'];
    for (const what of commands) {
      const t = await consoleCsv(`SHOW ${what}`);
      expect(t.code, what).toBe(0);
      for (const s of secrets) expect(t.raw + t.stderr, `${what} shows a secret`).not.toContain(s);
    }
  });
});
