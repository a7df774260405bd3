// What strangers can make the proxy spend: memory under a stream of invented
// users and under byte floods before login, upstream connections under a flood
// of invented database names, time under a slow login, and connection slots
// under half-open logins. Each bound is a number the test fails above.
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import type { RunningProxy } from '../../src/proxy.js';
import { listeningCount, startCliProxy, type CliProxy } from '../harness/cli.js';
import { USERS } from '../harness/postgres.js';
import { pgOptions, startTestProxy, testConfig, testEnv, withClient } from '../harness/proxy.js';
import { errorFields, RawConn, sslRequest, startup } from '../harness/raw.js';
import { Forwarder, heapAfterGc, rssBytes, until, withDeadline } from '../harness/hostile.js';

const MB = 1024 * 1024;
const { scram } = USERS;

let proxy: RunningProxy | null = null;
let cli: CliProxy | null = null;
let forwarder: Forwarder | null = null;
const strangers: RawConn[] = [];
afterEach(async () => {
  for (const c of strangers.splice(0)) c.end();
  await proxy?.close();
  await cli?.stop();
  await forwarder?.close();
  proxy = null;
  cli = null;
  forwarder = null;
});

/** Runs `fn(i)` for i < n with at most `concurrency` at a time. */
async function inParallel(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

/** Sends a startup packet and reads the first answer (an authentication request or an error), then hangs up. */
async function firstAnswer(port: number, params: Record<string, string>): Promise<{ type: string; code?: string }> {
  const c = await RawConn.connect(port);
  try {
    c.write(startup(params));
    const m = await c.message(10_000);
    if (!m) return { type: 'closed' };
    return { type: m.type, code: m.type === 'E' ? errorFields(m.body).C : undefined };
  } finally {
    c.end();
  }
}

describe('memory', () => {
  // Measured in process: a full GC before each reading (heapAfterGc) leaves what the proxy
  // keeps (cache entries, names, pools), which a child's RSS could not tell from garbage
  // not yet collected. Our own connections are closed and collected before the reading.
  it('3 000 logins with random 9 kB user names, each closed after the first auth request, leave the heap under +2 MB once idle', { timeout: 120_000 }, async () => {
    proxy = await startTestProxy({ client_tls_sslmode: 'prefer', max_client_conn: 500, auth_failure_limit: 0 });
    const port = proxy.port;
    const login = async (): Promise<void> => {
      const answer = await firstAnswer(port, { user: randomBytes(4500).toString('hex'), database: 'app1' });
      expect(answer.type).toBe('R'); // an unknown user still gets a (mock) SASL request
    };
    await inParallel(300, 16, login); // warm-up: pools, JIT, TLS contexts
    const before = heapAfterGc();
    const started = Date.now();
    await inParallel(3000, 16, login);
    const streamMs = Date.now() - started;
    const right = heapAfterGc() - before;
    // What is kept briefly (unknown users are cached a few seconds) is let go once idle, as the
    // issue measured it (after 15 s idle): watch it fall, for up to 15 s, then hold it to the bound.
    let growth = right;
    const idleStart = Date.now();
    await until(() => (growth = heapAfterGc() - before) < MB / 2, 15_000, 500);
    console.log(
      `random-user logins: 3000 in ${streamMs} ms; heap+external ${(before / MB).toFixed(1)} MB, ${(right / MB).toFixed(2)} MB more right after, ` +
        `${(growth / MB).toFixed(2)} MB more after ${Date.now() - idleStart} ms idle`,
    );
    expect(growth).toBeLessThan(2 * MB);
  });

  // Measured as a child process's RSS: what a proxy buffers for strangers sits in socket and
  // Buffer memory outside the V8 heap, and the test's own sockets would blur an in-process reading.
  // The strangers' database has a black-holed server, so their auth lookup never ends:
  // nothing consumes their bytes, and the proxy must stop reading (or close) instead of buffering.
  it('20 unauthenticated connections streaming 16 kB frames after their startup packet leave RSS under +256 kB each', { timeout: 90_000 }, async () => {
    const { cluster } = testEnv();
    forwarder = await Forwarder.start({ host: cluster.host, port: cluster.port }, 'hole');
    cli = await startCliProxy({
      yaml: () => ['workers: 1', 'client_tls_sslmode: prefer', 'log_level: warn', 'max_client_conn: 200', 'server_connect_timeout: 15', 'client_login_timeout: 60'],
      env: {
        PG_INGRESS_AUTH_PASSWORD: USERS.auth.password,
        // Environment DSNs replace the file's map: the black hole, and the test cluster for everything else.
        PGBOUNCER_DSN_0: `stalled=host=127.0.0.1 port=${forwarder.port} dbname=app1`,
        PGBOUNCER_DSN_1: `*=host=${cluster.host} port=${cluster.port}`,
      },
      ready: (out) => listeningCount(out) >= 1,
    });
    const pid = cli.child.pid!;
    const port = cli.port;
    // Warm up as a real client would, then wait for a resting size (two readings 250 ms apart within 64 kB).
    for (let i = 0; i < 5; i++) await withClient(pgOptions(port, 'app1', scram.name, scram.password), (c) => c.query('SELECT 1'));
    let last = rssBytes(pid);
    await until(() => {
      const now = rssBytes(pid);
      const steady = Math.abs(now - last) < 64 * 1024;
      last = now;
      return steady;
    }, 5000, 250);
    const before = rssBytes(pid);
    let peak = before;
    const sampler = setInterval(() => {
      try {
        peak = Math.max(peak, rssBytes(pid));
      } catch {
        // the process is gone: the assertions below say so
      }
    }, 50);
    const frame = Buffer.concat([Buffer.from('p'), Buffer.alloc(4), randomBytes(16 * 1024 - 5)]);
    frame.writeInt32BE(frame.length - 1, 1);
    const PER_CONNECTION_CAP = 24 * MB;
    const floods = await Promise.all(Array.from({ length: 20 }, () => flood(port, frame, PER_CONNECTION_CAP)));
    const held = rssBytes(pid);
    clearInterval(sampler);
    const sent = floods.reduce((n, f) => n + f.sent, 0);
    const closed = floods.filter((f) => f.end === 'closed').length;
    console.log(
      `pre-auth floods: ${(sent / MB).toFixed(1)} MB sent over 20 connections (${closed} closed by the proxy, ${floods.filter((f) => f.end === 'stalled').length} stalled, ` +
        `${floods.filter((f) => f.end === 'cap reached').length} took all ${PER_CONNECTION_CAP / MB} MB), RSS ${(before / MB).toFixed(1)} MB -> peak ${(peak / MB).toFixed(1)} MB, ${(held / MB).toFixed(1)} MB while held`,
    );
    expect(cli.child.exitCode).toBeNull();
    // The proxy must stop reading (the flood stalls) or close the connection, never take it all.
    expect(floods.filter((f) => f.end === 'cap reached').length).toBe(0);
    expect(peak - before).toBeLessThan(20 * 256 * 1024);
    for (const f of floods) f.conn.end();
  });
});

/**
 * Streams `frame` after a startup packet, honouring backpressure, until the proxy closes,
 * stops reading (no drain for 1.5 s), or `cap` bytes went out.
 */
async function flood(port: number, frame: Buffer, cap: number): Promise<{ conn: RawConn; sent: number; end: 'closed' | 'stalled' | 'cap reached' }> {
  const conn = await RawConn.connect(port);
  const socket = conn.socket;
  socket.write(startup({ user: scram.name, database: 'stalled' }));
  let sent = 0;
  while (sent < cap) {
    if (conn.closed) return { conn, sent, end: 'closed' };
    if (!socket.write(frame)) {
      const drained = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), 1500);
        const done = (ok: boolean) => (): void => {
          clearTimeout(t);
          socket.off('drain', onDrain);
          socket.off('close', onClose);
          resolve(ok);
        };
        const onDrain = done(true);
        const onClose = done(false);
        socket.once('drain', onDrain);
        socket.once('close', onClose);
      });
      sent += frame.length;
      if (!drained) return { conn, sent, end: conn.closed ? 'closed' : 'stalled' };
    } else {
      sent += frame.length;
    }
  }
  return { conn, sent, end: 'cap reached' };
}

describe('upstream connection attempts', () => {
  async function floodProxy(): Promise<{ port: number; lookups: number }> {
    const { cluster } = testEnv();
    forwarder = await Forwarder.start({ host: cluster.host, port: cluster.port });
    const overrides = { client_tls_sslmode: 'prefer', max_client_conn: 500, databases: { '*': `host=127.0.0.1 port=${forwarder.port}` }, auth_failure_limit: 0 };
    proxy = await startTestProxy(overrides);
    const lookups = testConfig(overrides).auth_max_concurrent_lookups;
    return { port: proxy.port, lookups };
  }

  it('a flood of 300 logins over 10 invented database names through `*` opens a few upstream connections, not one per login', { timeout: 60_000 }, async () => {
    const { port } = await floodProxy();
    const answers = new Map<string, number>();
    await inParallel(300, 20, async (i) => {
      const a = await firstAnswer(port, { user: scram.name, database: `nodb_${i % 10}` });
      const k = `${a.type}${a.code ?? ''}`;
      answers.set(k, (answers.get(k) ?? 0) + 1);
    });
    console.log(`invented databases (10 names, 300 logins): ${forwarder!.accepted} upstream connections; answers ${JSON.stringify(Object.fromEntries(answers))}`);
    expect(Object.fromEntries(answers)).toEqual({ E3D000: 300 });
    expect(forwarder!.accepted).toBeLessThanOrEqual(30);
  });

  it('100 distinct invented database names at once keep concurrent upstream connections under the lookup cap', { timeout: 60_000 }, async () => {
    const { port, lookups } = await floodProxy();
    forwarder!.delayMs = 300; // a slow upstream: without a cap, every lookup would be open at once
    const codes = new Map<string, number>();
    await inParallel(100, 100, async (i) => {
      const a = await firstAnswer(port, { user: scram.name, database: `nodb_${i}_${randomBytes(3).toString('hex')}` });
      const k = `${a.type}${a.code ?? ''}`;
      codes.set(k, (codes.get(k) ?? 0) + 1);
    });
    console.log(`invented databases (100 at once): ${forwarder!.accepted} upstream connections, at most ${forwarder!.peak} at a time (cap ${lookups}); answers ${JSON.stringify(Object.fromEntries(codes))}`);
    // Every client hears that its database does not exist, or that lookups are busy (53300): never silence.
    for (const k of codes.keys()) expect(['E3D000', 'E53300', 'E08006']).toContain(k);
    // A finished lookup's connection may take a moment to close while the next one opens: a little slack above the cap.
    expect(forwarder!.peak).toBeLessThanOrEqual(lookups + 8);
  });
});

describe('login deadline', () => {
  /** When the proxy closed the socket, in ms since we connected (null: still open at `untilMs`). */
  async function closedAfter(conn: RawConn, connectedAt: number, untilMs: number): Promise<number | null> {
    await conn.waitClosed(Math.max(0, connectedAt + untilMs - Date.now()));
    return conn.closedAt === null ? null : conn.closedAt - connectedAt;
  }

  it('client_login_timeout 2 s: SSLRequest, TLS and startup 1.2 s apart are cut at 2 s from accept, not per phase', { timeout: 20_000 }, async () => {
    proxy = await startTestProxy({ client_login_timeout: 2 });
    const connectedAt = Date.now();
    const c = await RawConn.connect(proxy.port);
    const slow = (): Promise<void> => new Promise((r) => setTimeout(r, 1200)); // the client is slow on purpose
    c.write(sslRequest());
    expect(await c.byte()).toBe('S');
    await slow();
    await c.startTls().catch(() => undefined); // may already be cut
    await slow();
    if (!c.closed) c.write(startup({ user: scram.name, database: 'app1' }));
    const at = await closedAfter(c, connectedAt, 8000);
    console.log(`slow login (3 phases 1.2 s apart, client_login_timeout 2 s): closed after ${at} ms`);
    expect(at).not.toBeNull();
    expect(at!).toBeGreaterThanOrEqual(1900);
    expect(at!).toBeLessThan(2700);
  });

  it('client_login_timeout 2 s: a SCRAM exchange dragged out 1.2 s per message is cut at 2 s', { timeout: 20_000 }, async () => {
    proxy = await startTestProxy({ client_login_timeout: 2 });
    const { PasswordClient } = await import('../unit/auth/password-client.js');
    const connectedAt = Date.now();
    const c = await RawConn.connect(proxy.port);
    c.write(sslRequest());
    expect(await c.byte()).toBe('S');
    await c.startTls();
    c.write(startup({ user: scram.name, database: 'app1' }));
    expect((await c.message())?.type).toBe('R');
    const client = new PasswordClient(scram.password, { nonce: 'slow-nonce-0123456789' });
    await new Promise((r) => setTimeout(r, 1200));
    c.write(serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', client.first().toString()));
    const cont = await c.message().catch(() => null);
    await new Promise((r) => setTimeout(r, 1200));
    if (cont?.type === 'R' && !c.closed) c.write(serialize.sendSCRAMClientFinalMessage(client.final(cont.body.subarray(4)).toString()));
    const at = await closedAfter(c, connectedAt, 8000);
    console.log(`slow SCRAM (messages 1.2 s apart, client_login_timeout 2 s): closed after ${at} ms`);
    expect(at).not.toBeNull();
    expect(at!).toBeGreaterThanOrEqual(1900);
    expect(at!).toBeLessThan(2700);
  });
});

describe('pending logins', () => {
  /** Opens `n` TCP connections that never send a byte; returns how many the proxy still holds once refusals are done. */
  async function halfOpen(port: number, n: number, cap: number): Promise<number> {
    for (let i = 0; i < n; i++) strangers.push(await RawConn.connect(port));
    await until(() => strangers.filter((s) => !s.closed).length <= cap, 2000);
    return strangers.filter((s) => !s.closed).length;
  }

  it('max_pending_logins 3: of 12 half-open connections the proxy holds 3, and logged-in clients keep being served', { timeout: 30_000 }, async () => {
    proxy = await startTestProxy({ max_client_conn: 10, max_pending_logins: 3, client_login_timeout: 5 });
    const port = proxy.port;
    const logged: pg.Client[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const c = new pg.Client(pgOptions(port, 'app1', scram.name, scram.password));
        c.on('error', () => undefined);
        await c.connect();
        logged.push(c);
      }
      const held = await halfOpen(port, 12, 3);
      const refused = strangers.filter((s) => s.closed).map((s) => errorFields(s.pending.subarray(5)).C);
      console.log(`pending logins: 12 half-open with max_pending_logins 3 -> ${held} held, refusals ${JSON.stringify(refused)}`);
      expect(held).toBeLessThanOrEqual(3);
      for (const code of refused) expect(code).toBe('53300');
      for (const c of logged) expect((await withDeadline(c.query('SELECT 1 AS one'), 3000, 'logged-in client')).rows[0].one).toBe(1);
      // Once the strangers' login deadline passes, their slots serve real logins again.
      expect(await until(async () => withClient(pgOptions(port, 'app1', scram.name, scram.password), () => Promise.resolve(true)).catch(() => false), 8000, 250)).toBe(true);
    } finally {
      for (const c of logged) await c.end().catch(() => undefined);
    }
  });

  it('by default at most half of max_client_conn can be logging in', { timeout: 30_000 }, async () => {
    proxy = await startTestProxy({ max_client_conn: 10, client_login_timeout: 5 });
    const held = await halfOpen(proxy.port, 12, 5);
    console.log(`pending logins: 12 half-open with max_client_conn 10 and the default cap -> ${held} held`);
    expect(held).toBeLessThanOrEqual(5);
  });
});
