// Session pooling: reuse after a reset, per-client parameters, FIFO waiting,
// dirty servers closed, and query cancel through our own cancel keys.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import postgres from 'postgres';
import { readFileSync } from 'node:fs';
import type { RunningProxy } from '../../src/proxy.js';
import { adminSql, USERS } from '../harness/postgres.js';
import { activeQueries, until, queuedClients } from '../harness/poll.js';
import { conninfo, pgOptions, startTestProxy, testEnv, withClient } from '../harness/proxy.js';

let proxy: RunningProxy;
const user = USERS.scram;

beforeAll(async () => {
  const { cluster } = testEnv();
  // One server for this database, so that every client gets the same one.
  proxy = await startTestProxy({
    databases: {
      app1: `host=${cluster.host} port=${cluster.port} dbname=app1 pool_size=1`,
      app2: `host=${cluster.host} port=${cluster.port} dbname=app2 pool_size=2`,
    },
  });
});
afterAll(async () => {
  await proxy.close();
});

const opts = (db = 'app1', extra: Partial<pg.ClientConfig> = {}): pg.ClientConfig => ({ ...pgOptions(proxy.port, db, user.name, user.password), ...extra });
const backendGone = async (pid: number): Promise<boolean> => (await adminSql(testEnv().cluster, `SELECT count(*) FROM pg_stat_activity WHERE pid = ${pid}`)) === '0';
/** Whether exactly one backend of ours runs `query` (texts are unique to this file: other files share the cluster). */
const running = (query: string) => async (): Promise<boolean> => (await activeQueries(testEnv().cluster, user.name, query)) === 1;

describe('session pooling', () => {
  it('reuses the server for the next client, reset: a SET does not survive', async () => {
    const first = await withClient(opts(), async (c) => {
      await c.query("SET statement_timeout = '4321ms'");
      await c.query('CREATE TEMP TABLE scratch (x int)');
      return (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    });
    const second = await withClient(opts(), async (c) => {
      const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      const timeout = (await c.query('SHOW statement_timeout')).rows[0].statement_timeout as string;
      const temp = (await c.query("SELECT count(*)::int AS n FROM pg_class WHERE relname = 'scratch'")).rows[0].n as number;
      return { pid, timeout, temp };
    });
    expect(second).toEqual({ pid: first, timeout: '0', temp: 0 });
  });

  it('gives each client its own startup parameters on a shared server', async () => {
    const a = await withClient(opts('app1', { application_name: 'client-a', options: '-c TimeZone=Asia/Tokyo' } as pg.ClientConfig), async (c) =>
      (await c.query("SELECT current_setting('application_name') AS app, current_setting('TimeZone') AS tz")).rows[0],
    );
    const b = await withClient(opts('app1', { application_name: 'client-b' }), async (c) =>
      (await c.query("SELECT current_setting('application_name') AS app, current_setting('TimeZone') AS tz")).rows[0],
    );
    expect(a).toEqual({ app: 'client-a', tz: 'Asia/Tokyo' });
    expect(b.app).toBe('client-b');
    expect(b.tz).not.toBe('Asia/Tokyo');
  });

  it('makes a second client wait in line for the only server, then serves it', async () => {
    const holder = new pg.Client(opts());
    await holder.connect();
    const waiting = withClient(opts(), async (c) => (await c.query('SELECT 42 AS n')).rows[0].n as number);
    await until("the second client queued in app1's pool", () => queuedClients(proxy, 'app1') === 1);
    await holder.end();
    expect(await waiting).toBe(42);
  });

  it('closes a server its client left inside a transaction instead of pooling it', async () => {
    const c = new pg.Client(opts('app2', { application_name: 'left-in-tx' }));
    c.on('error', () => undefined); // we cut its connection on purpose
    await c.connect();
    await c.query('BEGIN');
    const pid = (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    await until(`server ${pid} closed, not pooled`, () => backendGone(pid));
  });
});

describe('large results', () => {
  it('relays a 20 MB row and 100 000 rows intact (DataRows streamed, never assembled)', async () => {
    await withClient(opts('app2'), async (c) => {
      const big = (await c.query("SELECT repeat('x', 20000000) AS s, md5(repeat('x', 20000000)) AS h")).rows[0];
      expect(big.s.length).toBe(20_000_000);
      const many = (await c.query('SELECT g, md5(g::text) AS h FROM generate_series(1, 100000) g')).rows;
      expect(many.length).toBe(100_000);
      expect(many[99_999]).toEqual({ g: 100_000, h: (await c.query("SELECT md5('100000') AS h")).rows[0].h });
    });
  });
});

describe('cancel', () => {
  it('cancels a running query with postgres.js (our cancel key, forwarded to the right server)', async () => {
    const sql = postgres({ host: 'localhost', port: proxy.port, database: 'app2', username: user.name, password: user.password, ssl: { ca: readFileSync(testEnv().caFile, 'utf8') }, max: 1 });
    try {
      const started = Date.now();
      const q = sql`SELECT pg_sleep(20) AS postgres_js_cancel`;
      q.execute(); // sent now, not when awaited
      await until('the postgres.js query running', running('SELECT pg_sleep(20) AS postgres_js_cancel'));
      q.cancel();
      await expect(q).rejects.toMatchObject({ code: '57014' });
      expect(Date.now() - started).toBeLessThan(10_000);
      // The connection stays usable after the cancel.
      expect((await sql`SELECT 1 AS one`)[0]).toEqual({ one: 1 });
    } finally {
      await sql.end();
    }
  });

  it('cancels a running query when psql gets SIGINT', async () => {
    const query = 'SELECT pg_sleep(20) AS psql_sigint';
    const child = spawn('psql', ['-X', '-d', conninfo(proxy.port, 'app2', user.name), '-c', query], { env: { PATH: process.env.PATH, PGPASSWORD: user.password } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    await until(
      "psql's query running",
      () => {
        if (child.exitCode !== null) throw new Error(`psql exited before its query ran: ${stderr}`);
        return running(query)();
      },
      { timeoutMs: 10_000 },
    );
    child.kill('SIGINT');
    const code = await exited;
    expect(stderr).toMatch(/canceling statement due to user request/);
    expect(code).not.toBe(0);
  });

  it('ignores a cancel request with a wrong key', async () => {
    await withClient(opts('app2'), async (c) => {
      const keys = c as unknown as { processID: number; secretKey: number };
      const text = 'SELECT pg_sleep(1.5) AS slept /* wrong cancel key */';
      const query = c.query(text);
      await until('the query running', running(text)); // a cancel before it would have nothing to hit
      const socket = net.connect(proxy.port, '127.0.0.1');
      const closed = new Promise((resolve) => socket.on('close', resolve));
      socket.on('error', () => undefined);
      const cancel = Buffer.alloc(16);
      cancel.writeInt32BE(16, 0);
      cancel.writeInt32BE(80877102, 4);
      cancel.writeInt32BE(keys.processID, 8);
      cancel.writeInt32BE((keys.secretKey ^ 0x5a5a5a5a) | 0, 12);
      socket.end(cancel);
      await closed; // the proxy has judged the key (it forwards before it closes)
      const res = await query;
      expect(res.rows[0].slept).toBe('');
    });
  });
});
