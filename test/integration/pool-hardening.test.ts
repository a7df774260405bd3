// Pooled connections stay private: a cancel never reaches another client's
// query (the server is held aside while a cancel for it is in flight, as
// PgBouncer's sv_being_canceled), and prepared statement bookkeeping follows
// what the server confirms. A user of its own keeps pg_stat_activity apart
// from the other files'. Cancels reach PostgreSQL through a gate in this file
// that can hold them, so that "in flight" lasts as long as the test says.
import { createHash } from 'node:crypto';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { RunningProxy } from '../../src/proxy.js';
import { adminSql } from '../harness/postgres.js';
import { pgOptions, startTestProxy, testEnv, withClient } from '../harness/proxy.js';

const USER = { name: 'hardening_user', password: 'hardening-secret-pw' };
const CANCEL_CODE = 80877102;

/**
 * A TCP relay in front of PostgreSQL. Ordinary connections are piped through.
 * A CancelRequest is, by mode: passed at once; held before it reaches
 * PostgreSQL ('late': a cancel delayed on the network); or delivered at once
 * with its connection's close held back ('slow-close').
 */
class CancelGate {
  mode: 'pass' | 'late' | 'slow-close' = 'pass';
  private readonly held: (() => void)[] = [];
  private readonly sockets = new Set<net.Socket>();
  private server!: net.Server;
  port = 0;
  /** Cancels that reached PostgreSQL. */
  delivered = 0;

  constructor(
    private readonly host: string,
    private readonly pgPort: number,
  ) {}

  async start(): Promise<void> {
    this.server = net.createServer({ allowHalfOpen: true }, (client) => this.accept(client));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  get heldCount(): number {
    return this.held.length;
  }

  /** Lets every held cancel go on. */
  release(): void {
    for (const go of this.held.splice(0)) go();
  }

  async close(): Promise<void> {
    this.release();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private track(s: net.Socket): net.Socket {
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
    s.on('error', () => undefined);
    return s;
  }

  private accept(client: net.Socket): void {
    this.track(client);
    let first = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      first = Buffer.concat([first, chunk]);
      if (first.length < 8) return;
      client.off('data', onData);
      const isCancel = first.readInt32BE(0) === 16 && first.readInt32BE(4) === CANCEL_CODE;
      if (!isCancel) return this.pipe(client, first);
      const deliver = (): void => this.deliverCancel(client, first.subarray(0, 16));
      if (this.mode === 'late') this.held.push(deliver);
      else deliver();
    };
    client.on('data', onData);
  }

  private pipe(client: net.Socket, first: Buffer): void {
    const upstream = this.track(net.connect(this.pgPort, this.host));
    upstream.write(first);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }

  private deliverCancel(client: net.Socket, request: Buffer): void {
    const upstream = this.track(net.connect(this.pgPort, this.host, () => upstream.end(request)));
    upstream.resume();
    upstream.on('close', () => {
      this.delivered++;
      // PostgreSQL has signalled the backend and closed: now the proxy may see the close.
      if (this.mode === 'slow-close') this.held.push(() => client.destroy());
      else client.destroy();
    });
  }
}

let gate: CancelGate;
let proxy: RunningProxy;
const clients: pg.Client[] = [];

beforeAll(async () => {
  const { cluster } = testEnv();
  await adminSql(cluster, `DROP ROLE IF EXISTS ${USER.name}; CREATE ROLE ${USER.name} LOGIN PASSWORD '${USER.password}'`);
  gate = new CancelGate(cluster.host, cluster.port);
  await gate.start();
  proxy = await startTestProxy({
    pool_mode: 'transaction',
    default_pool_size: 1,
    admin_users: [USER.name],
    auth_dbname: 'app1',
    databases: { app1: `host=127.0.0.1 port=${gate.port} dbname=app1` },
  });
});
afterEach(async () => {
  gate.mode = 'pass';
  gate.release();
  await Promise.all(clients.splice(0).map((c) => c.end().catch(() => undefined)));
});
afterAll(async () => {
  await proxy?.close();
  await gate?.close();
});

async function connect(): Promise<pg.Client> {
  const c = new pg.Client(pgOptions(proxy.port, 'app1', USER.name, USER.password));
  c.on('error', () => undefined);
  await c.connect();
  clients.push(c);
  return c;
}

/** Sends a CancelRequest for `c` to the proxy, with the keys the proxy gave it. */
function cancel(c: pg.Client): void {
  const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
  const s = net.connect(proxy.port, '127.0.0.1', () => {
    const buf = Buffer.alloc(16);
    buf.writeInt32BE(16, 0);
    buf.writeInt32BE(CANCEL_CODE, 4);
    buf.writeInt32BE(processID, 8);
    buf.writeInt32BE(secretKey, 12);
    s.end(buf);
  });
  s.on('error', () => undefined);
}

/** This user's row of SHOW POOLS, from the admin console. */
async function poolRow(): Promise<Record<string, number>> {
  return withClient(pgOptions(proxy.port, 'pgbouncer', USER.name, USER.password), async (c) => {
    const r = await c.query('SHOW POOLS');
    const row = (r.rows as Record<string, string>[]).find((p) => p.user === USER.name && p.database === 'app1');
    if (!row) return {};
    return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, Number(v)]));
  });
}

async function until(what: string, cond: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Whether PostgreSQL runs `sql` for our user right now. */
async function running(sql: string): Promise<boolean> {
  const { cluster } = testEnv();
  const n = await adminSql(cluster, `SELECT count(*) FROM pg_stat_activity WHERE usename = '${USER.name}' AND state = 'active' AND query = '${sql.replaceAll("'", "''")}'`);
  return n === '1';
}

/** Tracks a query without awaiting it. */
function track<T>(p: Promise<T>): { done: boolean; result: Promise<T> } {
  const t = { done: false, result: p };
  p.then(
    () => (t.done = true),
    () => (t.done = true),
  );
  return t;
}

describe('a cancel never reaches another client\'s query', () => {
  it('the canceled client\'s server is held aside until the cancel is over; the client queued behind gets it then', async () => {
    const a = await connect();
    const b = await connect();
    const { rows } = await a.query('SELECT pg_backend_pid() AS pid');
    const pid = rows[0].pid as number; // pool_size 1: the one server

    gate.mode = 'slow-close';
    const sleep = 'SELECT pg_sleep(5)';
    const slow = a.query(sleep);
    slow.catch(() => undefined);
    await until('a\'s query running', () => running(sleep));
    const queued = track(b.query('SELECT pg_backend_pid() AS pid, 2 AS n'));
    await until('b waiting', async () => (await poolRow()).cl_waiting === 1);

    cancel(a);
    await expect(slow).rejects.toMatchObject({ code: '57014' });
    // PostgreSQL has signalled the backend, but the cancel's connection has not closed yet: nobody gets the server.
    await until('the server held aside', async () => (await poolRow()).sv_being_canceled === 1);
    const held = await poolRow();
    expect(held).toMatchObject({ cl_waiting: 1, sv_active: 0, sv_idle: 0, sv_being_canceled: 1, cl_active_cancel_req: 1, sv_active_cancel: 1 });
    expect(queued.done).toBe(false);

    gate.release();
    const r = await queued.result;
    expect(r.rows[0]).toEqual({ pid, n: 2 }); // the very server that was being canceled, uncanceled
    expect(await poolRow()).toMatchObject({ sv_being_canceled: 0, cl_active_cancel_req: 0, sv_active_cancel: 0, cl_waiting: 0 });
  });

  it('a cancel that arrives after the query ended by itself cannot hit the query of the client queued behind', async () => {
    const a = await connect();
    const b = await connect();
    gate.mode = 'late';
    const sleep = 'SELECT pg_sleep(0.5) AS slept';
    const quick = a.query(sleep);
    await until('a\'s query running', () => running(sleep));
    const second = 'SELECT pg_sleep(0.5) AS slept, 3 AS n';
    const queued = track(b.query(second));
    await until('b waiting', async () => (await poolRow()).cl_waiting === 1);
    cancel(a);
    await until('the cancel parked on its way', () => gate.heldCount === 1);

    expect((await quick).rows[0].slept).toBe(''); // a's query ended by itself: the cancel is still on its way
    // Without the hold, b's query would run now and the late cancel would stop it.
    await until('the server held aside', async () => (await poolRow()).sv_being_canceled === 1);
    expect(queued.done).toBe(false);
    expect(await running(second)).toBe(false);

    gate.release(); // the cancel reaches PostgreSQL now, for an idle backend: it does nothing
    await until('the cancel delivered', () => gate.delivered > 0);
    const r = await queued.result;
    expect(r.rows[0]).toEqual({ slept: '', n: 3 });
  });

  it('twenty rounds of a cancel fired as the query ends: the client queued behind is never canceled', async () => {
    const a = await connect();
    const b = await connect();
    let aCanceled = 0;
    for (let round = 0; round < 20; round++) {
      const first = a.query('SELECT pg_sleep(0.03) AS slept');
      const second = b.query('SELECT pg_sleep(0.03) AS slept, $1::int AS round', [round]);
      // Jitter, not ordering: the cancel lands before, during or after a's query.
      await new Promise((r) => setTimeout(r, (round % 5) * 10));
      cancel(a);
      const [ra, rb] = await Promise.allSettled([first, second]);
      if (ra.status === 'rejected') {
        expect(ra.reason).toMatchObject({ code: '57014' });
        aCanceled++;
      }
      expect(rb.status === 'fulfilled' ? rb.value.rows[0].round : rb.reason).toBe(round);
      await until('the cancel finished', async () => (await poolRow()).sv_being_canceled === 0);
    }
    expect(aCanceled).toBeGreaterThan(0); // the cancels did land
  });
});

describe('prepared statements follow what the server confirms', () => {
  const SQL = 'SELECT $1::int + 1 AS n';

  it('DEALLOCATE ALL inside a multi-statement query: the client\'s names and the server\'s statements are forgotten', async () => {
    const c1 = await connect();
    const c2 = await connect();
    expect((await c1.query({ name: 'q1', text: SQL, values: [1] })).rows[0].n).toBe(2);
    expect((await c2.query({ name: 'q2', text: SQL, values: [2] })).rows[0].n).toBe(3); // shares c1's server statement
    await c1.query('select 1; deallocate all');
    // node-postgres still believes q2 prepared and sends only Bind: pg-ingress prepares it again on the server.
    expect((await c2.query({ name: 'q2', text: SQL, values: [3] })).rows[0].n).toBe(4);
    // c1 deallocated its own q1: it gets what PostgreSQL would say, with its own name, not pg-ingress's.
    const err = await c1.query({ name: 'q1', text: SQL, values: [1] }).then(
      () => null,
      (e: { code?: string; message: string }) => e,
    );
    expect(err).toMatchObject({ code: '26000', message: 'prepared statement "q1" does not exist' });
  });

  it('DISCARD ALL does the same', async () => {
    const c1 = await connect();
    const c2 = await connect();
    await c1.query({ name: 'd1', text: SQL, values: [1] });
    await c2.query({ name: 'd2', text: SQL, values: [1] });
    await c1.query('DISCARD ALL');
    expect((await c2.query({ name: 'd2', text: SQL, values: [5] })).rows[0].n).toBe(6);
    await expect(c1.query({ name: 'd1', text: SQL, values: [1] })).rejects.toMatchObject({ code: '26000' });
  });

  it('no client can pre-create, under the server name it would compute, the statement another client will run', async () => {
    const attacker = await connect();
    const victim = await connect();
    const victimSql = 'SELECT $1::int * 10 AS n';
    // The server name an unsalted scheme would give the victim's Parse: sha256 of query text and parameter types.
    const body = Buffer.concat([Buffer.from(`${victimSql}\0`), Buffer.from([0, 0])]);
    const guessed = `pgi_${createHash('sha256').update(body).digest('hex').slice(0, 32)}`;
    await attacker.query(`PREPARE ${guessed}(int) AS SELECT 666 AS n`);
    expect((await victim.query({ name: 'v', text: victimSql, values: [4] })).rows[0].n).toBe(40);
  });

  it('a server where a client replaced one of our statements by SQL (visible names, DEALLOCATE + PREPARE) is never handed to another client', async () => {
    const victim = await connect();
    const attacker = await connect();
    expect((await victim.query({ name: 'v1', text: SQL, values: [1] })).rows[0].n).toBe(2);
    // Our renamed statement is visible to whoever gets the same server.
    const { rows } = await attacker.query("SELECT name FROM pg_prepared_statements WHERE name LIKE 'pgi_%'");
    expect(rows.length).toBeGreaterThan(0);
    const stolen = rows[0].name as string;
    const pidBefore = (await attacker.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    await attacker.query(`DEALLOCATE ${stolen}`);
    await attacker.query(`PREPARE ${stolen}(int) AS SELECT 666 AS n`);
    // The victim's next Bind of v1 lands on a fresh server: the tampered one was closed when it was released.
    expect((await victim.query({ name: 'v1', text: SQL, values: [4] })).rows[0].n).toBe(5);
    expect((await victim.query('SELECT pg_backend_pid() AS pid')).rows[0].pid).not.toBe(pidBefore);
  });
});
