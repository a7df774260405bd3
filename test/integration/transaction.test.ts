// Transaction pooling: many clients on few servers, per-client parameters,
// named prepared statements renamed and shared, COPY, pipelines, and
// statement mode's refusal of transaction blocks.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import postgres from 'postgres';
import { serialize } from 'pg-protocol';
import type { RunningProxy } from '../../src/proxy.js';
import { adminSql, USERS } from '../harness/postgres.js';
import { until, queuedClients } from '../harness/poll.js';
import { conninfo, pgOptions, startTestProxy, testEnv, withClient } from '../harness/proxy.js';
import { rawLogin, typesUntilReady } from '../harness/raw.js';

const run = promisify(execFile);
const user = USERS.scram;
let proxy: RunningProxy;

beforeAll(async () => {
  const { cluster } = testEnv();
  const at = `host=${cluster.host} port=${cluster.port}`;
  await adminSql(cluster, `CREATE TABLE IF NOT EXISTS copy_target (id int, note text); GRANT ALL ON copy_target TO ${user.name}`, 'app2');
  proxy = await startTestProxy({
    pool_mode: 'transaction',
    max_prepared_statements: 3,
    databases: {
      app1: `${at} dbname=app1 pool_size=2`,
      one: `${at} dbname=app1 pool_size=1`,
      app2: `${at} dbname=app2 pool_size=1`,
      pgb: `${at} dbname=app2 pool_size=5`,
      stmt: `${at} dbname=app1 pool_size=1 pool_mode=statement`,
    },
  });
});
afterAll(async () => {
  await proxy.close();
});

const opts = (db: string, extra: Partial<pg.ClientConfig> = {}): pg.ClientConfig => ({ ...pgOptions(proxy.port, db, user.name, user.password), ...extra });
/** Servers the proxy holds for a database (its own pools only: other test files share the cluster). */
const serverConnections = (database: string): number => {
  let n = 0;
  for (const pool of proxy.context.pools.all()) if (pool.database === database) n += pool.total;
  return n;
};

describe('many clients, few servers', () => {
  it('serves 30 concurrent clients correctly on a pool of 2', async () => {
    const clients = await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const c = new pg.Client(opts('app1'));
        await c.connect();
        return { c, i };
      }),
    );
    try {
      const results = await Promise.all(
        clients.map(async ({ c, i }) => {
          const answers: number[] = [];
          for (let k = 0; k < 5; k++) answers.push((await c.query('SELECT $1::int * 10 + $2::int AS n', [i, k])).rows[0].n as number);
          return answers;
        }),
      );
      results.forEach((answers, i) => expect(answers).toEqual([0, 1, 2, 3, 4].map((k) => i * 10 + k)));
      expect(serverConnections('app1')).toBeLessThanOrEqual(2);
    } finally {
      await Promise.all(clients.map(({ c }) => c.end()));
    }
  });

  it('keeps a transaction on one server and releases it after COMMIT', async () => {
    await withClient(opts('one'), async (a) => {
      await withClient(opts('one'), async (b) => {
        await a.query('BEGIN');
        const pidA = (await a.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
        const bDone = b.query('SELECT pg_backend_pid() AS p'); // waits: the only server is in a transaction
        await until("b queued in one's pool", () => queuedClients(proxy, 'one') === 1);
        expect((await a.query('SELECT pg_backend_pid() AS p')).rows[0].p).toBe(pidA);
        await a.query('COMMIT');
        expect((await bDone).rows[0].p).toBe(pidA); // the same server, now B's
      });
    });
  });
});

describe('parameters per client', () => {
  it('gives each client its own TimeZone, application_name and search_path on one shared server', async () => {
    const a = new pg.Client(opts('one', { application_name: 'alpha', options: '-c TimeZone=Asia/Tokyo -c search_path=pg_catalog,public' } as pg.ClientConfig));
    const b = new pg.Client(opts('one', { application_name: 'beta', options: '-c TimeZone=America/Lima' } as pg.ClientConfig));
    await a.connect();
    await b.connect();
    const probe = "SELECT pg_backend_pid() AS pid, current_setting('TimeZone') AS tz, current_setting('application_name') AS app, current_setting('search_path') AS sp";
    try {
      for (let i = 0; i < 3; i++) {
        const ra = (await a.query(probe)).rows[0];
        const rb = (await b.query(probe)).rows[0];
        expect(ra.pid).toBe(rb.pid); // one server
        expect([ra.tz, ra.app, ra.sp]).toEqual(['Asia/Tokyo', 'alpha', 'pg_catalog,public']); // as PostgreSQL shows a -c value
        expect([rb.tz, rb.app, rb.sp]).toEqual(['America/Lima', 'beta', '"$user", public']);
      }
    } finally {
      await a.end();
      await b.end();
    }
  });

  it('does not leak a SET of a tracked parameter into the next client', async () => {
    await withClient(opts('one'), async (a) => {
      await a.query("SET TimeZone = 'Pacific/Auckland'");
      await a.query("SET application_name = 'changed-by-a'");
      await withClient(opts('one', { application_name: 'b-app' }), async (b) => {
        const rb = (await b.query("SELECT current_setting('TimeZone') AS tz, current_setting('application_name') AS app")).rows[0];
        expect(rb.tz).not.toBe('Pacific/Auckland');
        expect(rb.app).toBe('b-app');
      });
      // A's own SET is kept for A across servers.
      expect((await a.query("SELECT current_setting('TimeZone') AS tz")).rows[0].tz).toBe('Pacific/Auckland');
    });
  });
});

describe('named prepared statements', () => {
  const serverStatements = (c: pg.Client): Promise<number> =>
    c.query("SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name LIKE 'pgi_%'").then((r) => r.rows[0].n as number);

  it('runs node-postgres named statements across shared servers', async () => {
    await withClient(opts('app1'), async (c) => {
      for (let i = 0; i < 5; i++) {
        const r = await c.query({ name: 'double', text: 'SELECT $1::int * 2 AS d', values: [i] });
        expect(r.rows[0].d).toBe(i * 2);
      }
    });
  });

  it('shares one server statement between two clients preparing the same text', async () => {
    await withClient(opts('one'), async (a) => {
      await withClient(opts('one'), async (b) => {
        await a.query('DEALLOCATE ALL');
        await a.query({ name: 'mine', text: 'SELECT 41 + $1::int AS v', values: [1] });
        await b.query({ name: 'yours', text: 'SELECT 41 + $1::int AS v', values: [2] });
        expect((await b.query({ name: 'yours', text: 'SELECT 41 + $1::int AS v', values: [3] })).rows[0].v).toBe(44);
        expect(await serverStatements(a)).toBe(1);
      });
    });
  });

  it('evicts least recently used statements to stay at max_prepared_statements, re-preparing on use', async () => {
    await withClient(opts('one'), async (c) => {
      await c.query('DEALLOCATE ALL');
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < 8; i++) {
          const r = await c.query({ name: `s${i}`, text: `SELECT ${i} + $1::int AS v`, values: [round] });
          expect(r.rows[0].v).toBe(i + round);
          expect(await serverStatements(c)).toBeLessThanOrEqual(3);
        }
      }
    });
  });

  it('runs postgres.js with its default prepared statements, and a failure mid-pipeline keeps the connection usable', async () => {
    const sql = postgres({ host: 'localhost', port: proxy.port, database: 'app1', username: user.name, password: user.password, ssl: { ca: readFileSync(testEnv().caFile, 'utf8') }, max: 1 });
    try {
      for (let i = 0; i < 3; i++) expect((await sql`SELECT ${i}::int + 1 AS n`)[0]!.n).toBe(i + 1);
      const results = await Promise.allSettled([sql`SELECT 1 AS a`, sql`SELECT 1 / ${0}::int AS b`, sql`SELECT 3 AS c`, sql`SELECT ${4}::int AS d`]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
      expect((results[1] as PromiseRejectedResult).reason.code).toBe('22012');
      expect((await sql`SELECT ${5}::int AS e`)[0]!.e).toBe(5);
    } finally {
      await sql.end();
    }
  });

  it('runs pgbench -M prepared with 20 clients on a pool of 5', async () => {
    const { cluster } = testEnv();
    await run('pgbench', ['-i', '-s', '1', '-q', '-h', cluster.socketDir, '-p', String(cluster.port), '-U', USERS.superuser.name, 'app2']);
    await adminSql(cluster, `GRANT SELECT, UPDATE, INSERT ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO ${user.name}`, 'app2');
    const { stdout } = await run('pgbench', ['-M', 'prepared', '-S', '-c', '20', '-j', '2', '-t', '50', '-n', conninfo(proxy.port, 'pgb', user.name)], {
      env: { PATH: process.env.PATH, PGPASSWORD: user.password },
    });
    expect(stdout).toMatch(/number of transactions actually processed: 1000\/1000/);
    expect(stdout).toMatch(/number of failed transactions: 0/);
  }, 120_000);
});

describe('pipelines', () => {
  it('keeps a hand-made pipeline in sync when a Parse fails mid-batch', async () => {
    const c = await rawLogin(proxy.port, 'one', user.name, user.password);
    try {
      const batch = (...parts: Buffer[]): void => c.write(Buffer.concat(parts));
      const run = (stmt: string): Buffer[] => [serialize.bind({ statement: stmt }), serialize.execute({})];
      batch(
        serialize.parse({ name: 'good1', text: 'SELECT 1' }),
        ...run('good1'),
        serialize.parse({ name: 'bad', text: 'SELEC 2' }),
        ...run('bad'),
        serialize.parse({ name: 'good3', text: 'SELECT 3' }),
        serialize.sync(),
      );
      expect(await typesUntilReady(c)).toEqual(['1', '2', 'D', 'C', 'E', 'Z']);
      batch(...run('good1'), serialize.sync(), ...run('good1'), serialize.sync());
      expect(await typesUntilReady(c)).toEqual(['2', 'D', 'C', 'Z']);
      expect(await typesUntilReady(c)).toEqual(['2', 'D', 'C', 'Z']);
      // The same text prepared under a second name is answered in order with a ParseComplete.
      batch(serialize.parse({ name: 'again1', text: 'SELECT 1' }), ...run('again1'), serialize.close({ type: 'S', name: 'again1' }), serialize.sync());
      expect(await typesUntilReady(c)).toEqual(['1', '2', 'D', 'C', '3', 'Z']);
    } finally {
      c.end();
    }
  });
});

describe('writes upstream', () => {
  it('sends a renamed Bind and the Execute and Sync after it to the server in one write', async () => {
    const { cluster } = testEnv();
    const c = await rawLogin(proxy.port, 'one', user.name, user.password);
    // Count the socket writes that go to PostgreSQL (each is one syscall and one backend wakeup).
    type WriteFn = (this: net.Socket, ...args: unknown[]) => void;
    const proto = net.Socket.prototype as unknown as { _write: WriteFn; _writev: WriteFn };
    const original = { write: proto._write, writev: proto._writev };
    let upstreamWrites = 0;
    proto._write = function (...args) {
      if (this.remotePort === cluster.port) upstreamWrites++;
      original.write.apply(this, args);
    };
    proto._writev = function (...args) {
      if (this.remotePort === cluster.port) upstreamWrites++;
      original.writev.apply(this, args);
    };
    try {
      c.write(Buffer.concat([serialize.parse({ name: 'w1', text: 'SELECT 1' }), serialize.sync()]));
      expect(await typesUntilReady(c)).toEqual(['1', 'Z']);
      upstreamWrites = 0;
      c.write(Buffer.concat([serialize.bind({ statement: 'w1' }), serialize.execute({}), serialize.sync()]));
      expect(await typesUntilReady(c)).toEqual(['2', 'D', 'C', 'Z']);
      expect(upstreamWrites).toBe(1);
    } finally {
      proto._write = original.write;
      proto._writev = original.writev;
      c.end();
    }
  });
});

describe('COPY', () => {
  const psqlIn = (sql: string, input: string): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      const child = execFile('psql', ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', conninfo(proxy.port, 'app2', user.name), '-c', sql], { env: { PATH: process.env.PATH, PGPASSWORD: user.password } }, (err, stdout, stderr) =>
        resolve({ code: err ? 1 : 0, stdout: stdout.trim(), stderr: stderr.trim() }),
      );
      child.stdin!.end(input);
    });

  it('releases the only server after COPY in, COPY out and a failed COPY', async () => {
    expect((await psqlIn('COPY copy_target FROM STDIN', '1\tone\n2\ttwo\n')).code).toBe(0);
    const out = await psqlIn('COPY (SELECT id, note FROM copy_target ORDER BY id) TO STDOUT', '');
    expect(out.stdout).toBe('1\tone\n2\ttwo');
    const bad = await psqlIn('COPY copy_target FROM STDIN', 'not-a-number\tx\n');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/invalid input syntax for type integer/);
    // pool_size=1: these work only if every COPY gave the server back.
    await withClient(opts('app2'), async (c) => expect((await c.query('SELECT count(*)::int AS n FROM copy_target')).rows[0].n).toBe(2));
  });
});

describe('dirty servers', () => {
  it('closes the server of a client killed mid-transaction', async () => {
    const c = new pg.Client(opts('one'));
    c.on('error', () => undefined);
    await c.connect();
    await c.query('BEGIN');
    const pid = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
    (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    await until(`server ${pid} closed, not pooled`, async () => (await adminSql(testEnv().cluster, `SELECT count(*) FROM pg_stat_activity WHERE pid = ${pid}`)) === '0');
    await withClient(opts('one'), async (d) => expect((await d.query('SELECT 1 AS one')).rows[0].one).toBe(1));
  });
});

describe('statement mode', () => {
  it('runs single statements and throws out a client that opens a transaction block', async () => {
    const c = new pg.Client(opts('stmt'));
    const failure = new Promise<{ code?: string; message: string }>((resolve) => c.on('error', resolve));
    await c.connect();
    expect((await c.query('SELECT 5 AS n')).rows[0].n).toBe(5);
    await c.query('BEGIN').catch(() => undefined); // as in PgBouncer, the error follows BEGIN's answer
    expect(await failure).toMatchObject({ code: '0A000', message: 'transaction blocks not allowed in statement pooling mode' });
    await c.end().catch(() => undefined);
    await withClient(opts('stmt'), async (d) => expect((await d.query('SELECT 6 AS n')).rows[0].n).toBe(6));
  });
});
