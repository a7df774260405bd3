// The relay's bounds after login: what streams through unassembled, what is
// assembled and up to where, and that a streamed frame keeps its server.
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import pg from 'pg';
import postgres from 'postgres';
import { until } from '../harness/poll.js';
import { pgOptions, startTestProxy, testEnv, withClient } from '../harness/proxy.js';
import { USERS } from '../harness/postgres.js';
import type { RunningProxy } from '../../src/proxy.js';

const { scram } = USERS;
let proxy: RunningProxy | null = null;

afterEach(async () => {
  await proxy?.close();
  proxy = null;
});

async function start(overrides: Record<string, unknown>): Promise<RunningProxy> {
  proxy = await startTestProxy(overrides);
  return proxy;
}

describe('large client messages', () => {
  it('a 24 MB Query from an idle transaction-mode client streams through to a server and back intact', async () => {
    const p = await start({ pool_mode: 'transaction', default_pool_size: 1 });
    const text = 'x'.repeat(24 << 20);
    await withClient(pgOptions(p.port, 'app1', scram.name, scram.password), async (c) => {
      const { rows } = await c.query(`SELECT length('${text}') AS n, 1 AS one`);
      expect(Number(rows[0].n)).toBe(24 << 20);
      // The same session goes on normally: the streamed frame ended where it should.
      expect((await c.query('SELECT 2 AS two')).rows[0].two).toBe(2);
    });
  });

  it('COPY FROM STDIN with 4 MB rows streams through, in transaction mode', async () => {
    const p = await start({ pool_mode: 'transaction', default_pool_size: 1 });
    const { caFile } = testEnv();
    const sql = postgres({ host: 'localhost', port: p.port, database: 'app1', username: scram.name, password: scram.password, ssl: { ca: readFileSync(caFile, 'utf8') }, max: 1, onnotice: () => undefined });
    try {
      await sql`CREATE TEMP TABLE relay_copy (t text)`; // one server (pool of 1): the table stays with the session
      const row = 'y'.repeat(4 << 20); // each CopyData spans many TLS records and socket chunks
      const writable = await sql`COPY relay_copy FROM STDIN`.writable();
      await new Promise<void>((resolve, reject) => {
        writable.on('error', reject);
        writable.on('finish', resolve);
        writable.write(`${row}\n`);
        writable.write(`${row}\n`);
        writable.end();
      });
      const [r] = await sql`SELECT count(*)::int AS n, sum(length(t))::bigint AS bytes FROM relay_copy`;
      expect(r!.n).toBe(2);
      expect(Number(r!.bytes)).toBe(2 * (4 << 20));
    } finally {
      await sql.end({ timeout: 5 });
    }
  });

  it('a message over max_packet_size ends that client with 08P01, and others go on', async () => {
    const p = await start({ pool_mode: 'transaction', max_packet_size: 65536 });
    const bystander = new pg.Client(pgOptions(p.port, 'app1', scram.name, scram.password));
    bystander.on('error', () => undefined);
    await bystander.connect();
    try {
      const err = await withClient(pgOptions(p.port, 'app1', scram.name, scram.password), (c) =>
        c.query(`SELECT '${'z'.repeat(100_000)}'`).then(
          () => null,
          (e: { code?: string; message: string }) => e,
        ),
      );
      expect(err?.code).toBe('08P01');
      expect(err?.message).toMatch(/limit is 65536/);
      expect((await bystander.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    } finally {
      await bystander.end().catch(() => undefined);
    }
  });

  it('named statements with a 2 MB parameter (Bind assembled for renaming) work under transaction pooling', async () => {
    const p = await start({ pool_mode: 'transaction', default_pool_size: 1 });
    await withClient(pgOptions(p.port, 'app1', scram.name, scram.password), async (c) => {
      const big = 'b'.repeat(2 << 20);
      const { rows } = await c.query({ name: 'len', text: 'SELECT length($1::text) AS n', values: [big] });
      expect(Number(rows[0].n)).toBe(2 << 20);
    });
  });
});

describe('large server messages', () => {
  it('a 3 MB NOTICE and a 3 MB ERROR stream through to the client (pg-ingress reads whole only what pooling needs, up to 1 MB)', async () => {
    const p = await start({ pool_mode: 'transaction', default_pool_size: 1 });
    await withClient(pgOptions(p.port, 'app1', scram.name, scram.password), async (c) => {
      const notices: string[] = [];
      c.on('notice', (n) => notices.push(n.message ?? ''));
      await c.query("DO $$ BEGIN RAISE NOTICE '%', repeat('n', 3 * 1024 * 1024); END $$");
      expect(notices).toHaveLength(1);
      expect(notices[0]!.length).toBe(3 << 20);
      const err = await c.query("DO $$ BEGIN RAISE EXCEPTION '%', repeat('e', 3 * 1024 * 1024); END $$").then(
        () => null,
        (e: { code?: string; message: string }) => e,
      );
      expect(err?.code).toBe('P0001');
      expect(err?.message.length).toBe(3 << 20);
      // The server was released after the error and serves the next transaction.
      expect((await c.query('SELECT 3 AS three')).rows[0].three).toBe(3);
    });
  });
});

describe('client sockets', () => {
  /** The proxy's end of the client connection from `clientPort`, as /proc/net/tcp shows it: `tr` 2 is the keepalive timer. */
  function proxySideTimer(proxyPort: number, clientPort: number): number | null {
    const hex = (n: number): string => n.toString(16).toUpperCase().padStart(4, '0');
    for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 6) continue;
      if (f[1]!.endsWith(`:${hex(proxyPort)}`) && f[2]!.endsWith(`:${hex(clientPort)}`) && f[3] === '01') return Number.parseInt(f[5]!.split(':')[0]!, 16);
    }
    return null;
  }

  async function timerOfIdleClient(overrides: Record<string, unknown>): Promise<number | null> {
    const p = await start(overrides);
    return withClient(pgOptions(p.port, 'app1', scram.name, scram.password), async (c) => {
      await c.query('SELECT 1');
      const local = (c as unknown as { connection: { stream: { localPort: number } } }).connection.stream.localPort;
      // Right after a reply the retransmission timer (1) may run until the ACK: wait for the socket to be idle.
      let timer: number | null = null;
      await until('the client socket to go idle', () => {
        timer = proxySideTimer(p.port, local);
        return timer !== null && timer !== 1;
      });
      return timer;
    });
  }

  it.runIf(existsSync('/proc/net/tcp'))('have TCP keepalive by default (tcp_keepalive), and not when it is off', async () => {
    expect(await timerOfIdleClient({ tcp_keepidle: 30 })).toBe(2);
    await proxy?.close();
    proxy = null;
    expect(await timerOfIdleClient({ tcp_keepalive: false })).toBe(0);
  });
});
