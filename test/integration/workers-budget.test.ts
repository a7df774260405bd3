// One budget, however many workers: the real CLI with `workers: 2` and `4`,
// its clients spread over every worker, and PostgreSQL's pg_stat_activity as
// the witness of how many server connections there were. Each test has its
// own database, so other test files' backends are not counted.
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BackendSampler, backendCount } from '../harness/backends.js';
import { listeningCount, startCliProxy, type CliProxy } from '../harness/cli.js';
import { until } from '../harness/poll.js';
import { adminSql, USERS } from '../harness/postgres.js';
import { conninfo, pgOptions, psql, testEnv } from '../harness/proxy.js';
import { nodeHasReusePort } from '../../src/workers/reuse-port.js';
import { defaultWorkerCount } from '../../src/workers/cpu-budget.js';

const scram = USERS.scram;
const md5 = USERS.md5;

describe.each([2, 4])('workers: %i', (workers) => {
  const db = (name: string): string => `bw${workers}_${name}`;
  let proxy: CliProxy;
  const open: pg.Client[] = [];

  beforeAll(async () => {
    const { cluster } = testEnv();
    for (const name of ['pool', 'db', 'res', 'cl', 'kill']) await adminSql(cluster, `CREATE DATABASE ${db(name)}`);
    proxy = await startCliProxy({
      yaml: () => [
        `workers: ${workers}`,
        'pool_mode: transaction',
        'default_pool_size: 2',
        'reserve_pool_timeout: 0.3',
        'auth_dbname: postgres',
        `admin_users: ${scram.name}`,
        'metrics_port: off',
      ],
      // The per-database limits (PgBouncer's DSN keys).
      databases: [
        `  ${db('db')}: host=${cluster.host} port=${cluster.port} pool_size=20 max_db_connections=2`,
        `  ${db('res')}: host=${cluster.host} port=${cluster.port} pool_size=1 reserve_pool_size=1`,
        `  ${db('cl')}: host=${cluster.host} port=${cluster.port} max_db_client_connections=3`,
        `  ${db('kill')}: host=${cluster.host} port=${cluster.port} pool_size=1`,
      ],
      env: { PG_INGRESS_AUTH_PASSWORD: USERS.auth.password },
      ready: (out) => listeningCount(out) === workers,
      timeoutMs: 45_000,
    });
    // On Node 22.12+ (npm run test:node24) each worker listens itself; on Node 20 the primary hands sockets out.
    const listening = proxy.output().split('\n').filter((l) => l.includes('pg-ingress listening'));
    expect(listening.map((l) => (JSON.parse(l) as { reuse_port: boolean }).reuse_port)).toEqual(Array(workers).fill(nodeHasReusePort()));
  }, 90_000);

  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.end().catch(() => undefined)));
  });

  afterAll(async () => {
    await proxy?.stop();
  });

  const workerOf = (c: pg.Client): number => (c as unknown as { processID: number }).processID >>> 24;

  async function connect(database: string, user: { name: string; password: string } = scram): Promise<pg.Client> {
    const c = new pg.Client(pgOptions(proxy.port, database, user.name, user.password));
    c.on('error', () => undefined);
    open.push(c);
    await c.connect();
    return c;
  }

  /** `n` clients, on at least two workers (more are connected until they are). */
  async function connectSpread(n: number, database: string, user: { name: string; password: string } = scram): Promise<pg.Client[]> {
    const clients: pg.Client[] = [];
    while (clients.length < n || (new Set(clients.map(workerOf)).size < 2 && clients.length < 40)) clients.push(await connect(database, user));
    expect(new Set(clients.map(workerOf)).size).toBeGreaterThanOrEqual(2);
    return clients;
  }

  /** Every client runs `sql` at once; PostgreSQL's backends of `database` are sampled meanwhile. */
  async function underLoad(database: string, clients: pg.Client[], sql: string): Promise<{ active: number; total: number }> {
    const sampler = await BackendSampler.start(testEnv().cluster, database);
    const queries = await Promise.allSettled(clients.map((c) => c.query(sql)));
    const peaks = await sampler.stop();
    expect(queries.filter((q) => q.status === 'rejected')).toEqual([]);
    return peaks;
  }

  /** SHOW POOLS over the admin console (any worker answers for all). */
  async function showPools(): Promise<Array<Record<string, string>>> {
    const r = await psql(conninfo(proxy.port, 'pgbouncer', scram.name), 'SHOW POOLS', { PGPASSWORD: scram.password });
    expect(r.stderr).toBe('');
    // psql -t prints no header: SHOW POOLS' columns, in PgBouncer's order.
    const names = ['database', 'user', 'cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active', 'sv_active_cancel', 'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login', 'maxwait', 'maxwait_us', 'pool_mode'];
    return r.stdout.split('\n').filter((l) => l.includes('|')).map((row) => Object.fromEntries(row.split('|').map((v, i) => [names[i] ?? String(i), v])));
  }

  it('default_pool_size 2: clients on every worker share 2 servers, and every queued client is served', async () => {
    const clients = await connectSpread(8, db('pool'));
    const peaks = await underLoad(db('pool'), clients, 'SELECT pg_sleep(0.3)');
    expect(peaks.active).toBe(2); // reached, never exceeded: per-worker pools would have run 2 × workers at once
    // A server closed in one worker for a waiter in another may still be exiting when its replacement logs in.
    expect(peaks.total).toBeLessThanOrEqual(3);

    // Quiet again: SHOW POOLS (all workers merged) and PostgreSQL agree, within the budget.
    let servers = -1;
    let backends = -2;
    await until('SHOW POOLS agrees with pg_stat_activity', async () => {
      const row = (await showPools()).find((r) => r.database === db('pool') && r.user === scram.name);
      servers = ['sv_active', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login'].reduce((n, k) => n + Number(row?.[k] ?? 0), 0);
      backends = await backendCount(testEnv().cluster, db('pool'));
      return servers === backends;
    });
    expect(servers).toBeLessThanOrEqual(2);
    expect(servers).toBeGreaterThan(0);
  });

  it('under steady contention servers do not change hands per transaction', async () => {
    const clients = await connectSpread(8, db('pool'));
    const pids = new Set<number>();
    const started = Date.now();
    await Promise.all(
      clients.map(async (c) => {
        for (let i = 0; i < 40; i++) pids.add((await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid);
      }),
    );
    const elapsed = Date.now() - started;
    // 320 transactions. Each worker keeps its share; a slot that cannot be split evenly (more workers
    // than servers) moves at most about once per 100 ms quantum, after the shares settle at the start
    // (a few logins while every worker asks at once). Handing a server over per transaction would log
    // in hundreds of backends.
    expect(pids.size).toBeGreaterThanOrEqual(2);
    expect(pids.size).toBeLessThanOrEqual(2 * workers + 2 * Math.ceil(elapsed / 100));
    expect(pids.size).toBeLessThan(80);
  });

  it('max_db_connections 2 across two users: 2 backends for the database at most', async () => {
    const clients = [...(await connectSpread(4, db('db'), scram)), ...(await connectSpread(4, db('db'), md5))];
    const peaks = await underLoad(db('db'), clients, 'SELECT pg_sleep(0.3)');
    expect(peaks.active).toBe(2);
    expect(peaks.total).toBeLessThanOrEqual(3);
  });

  it('reserve_pool_size 1: a client waiting reserve_pool_timeout gets the one reserve server, not more', async () => {
    const clients = await connectSpread(3, db('res'));
    const peaks = await underLoad(db('res'), clients, 'SELECT pg_sleep(1.2)');
    expect(peaks.active).toBe(2); // pool_size 1 + reserve 1
  });

  it('max_db_client_connections 3 holds across workers, and a freed slot admits the next client', async () => {
    // Three clients on at least two workers. With reusePort the kernel may put them on one: swap
    // one for a new connection until they are spread (a 4th would be refused).
    const clients = [await connect(db('cl')), await connect(db('cl')), await connect(db('cl'))];
    for (let i = 0; i < 30 && new Set(clients.map(workerOf)).size < 2; i++) {
      await clients.shift()!.end();
      await until('a slot is free again', async () => {
        try {
          clients.push(await connect(db('cl')));
          return true;
        } catch {
          return false;
        }
      });
    }
    expect(new Set(clients.map(workerOf)).size).toBeGreaterThanOrEqual(2);
    const refused = new pg.Client(pgOptions(proxy.port, db('cl'), scram.name, scram.password));
    refused.on('error', () => undefined);
    await expect(refused.connect()).rejects.toMatchObject({ code: '53300', message: 'client connections exceeded (max_db_client_connections)' });
    await clients[0]!.end();
    // The slot comes back when the primary hears the client left: poll, a login is cheap.
    let admitted: pg.Client | null = null;
    await until('a new client is admitted', async () => {
      const c = new pg.Client(pgOptions(proxy.port, db('cl'), scram.name, scram.password));
      c.on('error', () => undefined);
      try {
        await c.connect();
        admitted = c;
        return true;
      } catch (err) {
        expect((err as { code?: string }).code).toBe('53300');
        return false;
      }
    });
    open.push(admitted!);
    expect((await admitted!.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  });

  it('a worker killed with SIGKILL gives its budget back at once: a client queued on another worker is served', async () => {
    // A holds the only server of the pool (in a transaction), B waits for it on another worker.
    const [first, ...rest] = await connectSpread(2, db('kill'));
    const holder = first!;
    const waiter = rest.find((c) => workerOf(c) !== workerOf(holder))!;
    await holder.query('BEGIN');
    await holder.query('SELECT 1');
    const waiting = waiter.query('SELECT 42 AS answer');
    await until('the waiter is queued', async () => (await showPools()).some((r) => r.database === db('kill') && Number(r.cl_waiting) >= 1));
    expect(await backendCount(testEnv().cluster, db('kill'))).toBe(1);

    const pid = workerPid(proxy.output(), workerOf(holder));
    process.kill(pid, 'SIGKILL');
    await expect(waiting).resolves.toMatchObject({ rows: [{ answer: 42 }] });
    // The dead worker's backend went with its socket; the budget never held more than one.
    await until('one backend left', async () => (await backendCount(testEnv().cluster, db('kill'))) === 1);
  });
});

describe('the defaults (workers: one per CPU, default_pool_size 20)', () => {
  let proxy: CliProxy;
  const open: pg.Client[] = [];
  const DB = 'bw_defaults';

  beforeAll(async () => {
    await adminSql(testEnv().cluster, `CREATE DATABASE ${DB}`);
    // Only what the test needs changed: transaction pooling and where auth_query runs.
    proxy = await startCliProxy({
      yaml: () => ['pool_mode: transaction', 'metrics_port: off', 'auth_dbname: postgres'],
      env: { PG_INGRESS_AUTH_PASSWORD: USERS.auth.password },
      ready: (out) => listeningCount(out) === defaultWorkerCount(),
      timeoutMs: 45_000,
    });
  }, 90_000);

  afterAll(async () => {
    await Promise.all(open.map((c) => c.end().catch(() => undefined)));
    await proxy?.stop();
  });

  it('30 clients busy at once run on 20 backends, not 20 per worker', async () => {
    for (let i = 0; i < 30; i++) {
      const c = new pg.Client(pgOptions(proxy.port, DB, scram.name, scram.password));
      c.on('error', () => undefined);
      open.push(c);
      await c.connect();
    }
    const workers = new Set(open.map((c) => (c as unknown as { processID: number }).processID >>> 24));
    expect(workers.size).toBeGreaterThanOrEqual(Math.min(defaultWorkerCount(), 2)); // the clients are on several workers
    const sampler = await BackendSampler.start(testEnv().cluster, DB);
    const queries = await Promise.allSettled(open.map((c) => c.query('SELECT pg_sleep(0.5)')));
    const peaks = await sampler.stop();
    expect(queries.filter((q) => q.status === 'rejected')).toEqual([]);
    expect(peaks.active).toBe(20);
    expect(peaks.total).toBeLessThanOrEqual(21);
  });
});

describe('max_client_conn across workers', () => {
  let proxy: CliProxy;
  const open: pg.Client[] = [];

  beforeAll(async () => {
    proxy = await startCliProxy({
      // Round-robin puts the 5 clients on both workers; reusePort's kernel hash puts them all on one 1 time in 16 (cli.test covers reusePort).
      yaml: () => ['workers: 2', 'pool_mode: transaction', 'max_client_conn: 5', 'listen_reuse_port: off', 'metrics_port: off', 'auth_dbname: postgres'],
      env: { PG_INGRESS_AUTH_PASSWORD: USERS.auth.password },
      ready: (out) => listeningCount(out) === 2,
    });
  }, 60_000);

  afterAll(async () => {
    await Promise.all(open.map((c) => c.end().catch(() => undefined)));
    await proxy?.stop();
  });

  it('the 6th client is refused, whichever worker it lands on', async () => {
    const workers = new Set<number>();
    for (let i = 0; i < 5; i++) {
      const c = new pg.Client(pgOptions(proxy.port, 'app1', scram.name, scram.password));
      c.on('error', () => undefined);
      open.push(c);
      await c.connect();
      workers.add((c as unknown as { processID: number }).processID >>> 24);
    }
    expect(workers.size).toBe(2);
    // Each worker alone has room; together they have none.
    for (let i = 0; i < 2; i++) {
      const c = new pg.Client(pgOptions(proxy.port, 'app1', scram.name, scram.password));
      c.on('error', () => undefined);
      await expect(c.connect()).rejects.toMatchObject({ code: '53300', message: 'no more connections allowed (max_client_conn)' });
    }
  });
});

/** The pid of worker `id`, from its log lines (pino writes pid and worker on each). */
function workerPid(output: string, id: number): number {
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    const entry = JSON.parse(line) as { pid?: number; worker?: number; msg?: string };
    if (entry.worker === id && entry.msg === 'pg-ingress listening' && entry.pid) return entry.pid;
  }
  throw new Error(`no log line of worker ${id}`);
}
