// The authentication side of hardening, against the real cluster: what a
// stream of strangers can make pg-ingress hold (the verifier cache, lookups in
// flight, upstream auth connections for invented databases), auth-failure
// throttling per address and database, and roles that can SET ROLE to a
// superuser. Strangers are raw sockets; logins that should work use node-postgres.
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { MISSING_DATABASE_TTL_MS } from '../../src/auth/auth-query.js';
import { clientKey, saltedPassword, serverKey } from '../../src/auth/scram.js';
import { parseVerifier, type ScramVerifier } from '../../src/auth/verifier.js';
import { FrameQueue } from '../../src/protocol/frame-queue.js';
import { serverLogin } from '../../src/pool/server-login.js';
import type { RunningProxy } from '../../src/proxy.js';
import { adminSql, USERS } from '../harness/postgres.js';
import { connectError, pgOptions, startTestProxy, testEnv, withClient } from '../harness/proxy.js';
import { RawConn, errorFields, startup } from '../harness/raw.js';
import { PasswordClient } from '../unit/auth/password-client.js';

const SU_MEMBER = { name: 'su_member', password: 'su-member-pw' };

/** What a raw, plaintext login attempt got: the first auth request's code, or an error's SQLSTATE. */
interface Probe {
  sasl: boolean;
  sqlstate: string | null;
  message: string | null;
}

/**
 * One stranger: StartupMessage, then either close at the first auth request
 * or answer SCRAM with a wrong password.
 */
async function probe(port: number, user: string, database: string, finish: 'close' | 'wrong-password' = 'close'): Promise<Probe> {
  const c = await RawConn.connect(port);
  try {
    c.write(startup({ user, database }));
    const client = new PasswordClient('not-the-password', { nonce: randomBytes(12).toString('base64') });
    let sasl = false;
    for (;;) {
      const m = await c.message(15_000);
      if (!m) return { sasl, sqlstate: null, message: null };
      if (m.type === 'E') {
        const f = errorFields(m.body);
        return { sasl, sqlstate: f.C ?? null, message: f.M ?? null };
      }
      if (m.type !== 'R') continue;
      const code = m.body.readInt32BE(0);
      if (code === 10) {
        sasl = true;
        if (finish === 'close') return { sasl, sqlstate: null, message: null };
        c.write(serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', client.first().toString()));
      } else if (code === 11) {
        c.write(serialize.sendSCRAMClientFinalMessage(client.final(m.body.subarray(4)).toString()));
      }
    }
  } finally {
    c.end();
  }
}

/** Runs `task(i)` for i in [0, n) with at most `parallel` at once. */
async function inParallel<T>(n: number, parallel: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await task(i);
      }
    }),
  );
  return out;
}

/** Samples `read()` every few milliseconds until stopped; returns the largest value seen. */
function sampleMax(read: () => number): { stop(): number } {
  let max = read();
  const timer = setInterval(() => (max = Math.max(max, read())), 2);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(max, read());
    },
  };
}

/** A TCP relay to the cluster that counts the connections pg-ingress opens through it. */
async function countingRelay(): Promise<{ port: number; total: () => number; maxOpen: () => number; close(): Promise<void> }> {
  const { cluster } = testEnv();
  let total = 0;
  let open = 0;
  let maxOpen = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    total++;
    maxOpen = Math.max(maxOpen, ++open);
    const upstream = net.connect(cluster.port, cluster.host);
    sockets.add(client).add(upstream);
    // In use until Postgres sends its ErrorResponse (FATAL 3D000 for an invented database):
    // counted down before the relay forwards it, so before pg-ingress can reuse the slot.
    let counted = true;
    const ended = (): void => {
      if (counted) open--;
      counted = false;
    };
    let pending = Buffer.alloc(0);
    upstream.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 5 && pending.length >= 1 + pending.readInt32BE(1)) {
        if (pending[0] === 0x45) ended(); // 'E'
        pending = pending.subarray(1 + pending.readInt32BE(1));
      }
      client.write(chunk);
    });
    const done = (): void => {
      ended();
      sockets.delete(client);
      sockets.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', done).on('close', done);
    upstream.on('error', done).on('close', done);
    client.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    total: () => total,
    maxOpen: () => maxOpen,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const superuserClient = (): pg.Client => {
  const { cluster } = testEnv();
  return new pg.Client({ host: cluster.host, port: cluster.port, user: USERS.superuser.name, password: USERS.superuser.password, database: 'postgres' });
};

describe('a stream of random user names', () => {
  let proxy: RunningProxy;
  beforeAll(async () => {
    proxy = await startTestProxy({ client_tls_sslmode: 'prefer', auth_cache_size: 500, auth_max_concurrent_lookups: 4, auth_failure_limit: 0 });
  });
  afterAll(async () => {
    await proxy.close();
  });

  it('leaves the verifier cache at its cap and never runs more lookups than allowed', async () => {
    const aq = proxy.context.authQuery;
    const running = sampleMax(() => aq.usage.running);
    const waiting = sampleMax(() => aq.usage.waiting);
    const cached = sampleMax(() => aq.usage.cached);
    const admin = superuserClient();
    await admin.connect();
    let authConnections = 0;
    const watch = setInterval(() => {
      admin
        .query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pg-ingress auth_query'")
        .then((r) => (authConnections = Math.max(authConnections, r.rows[0]!.n)))
        .catch(() => undefined);
    }, 50);
    try {
      // 9 kB random names, as an attacker would send; one in ten finishes SCRAM with a wrong password.
      const results = await inParallel(3000, 40, (i) => probe(proxy.port, randomBytes(4600).toString('hex'), 'app1', i % 10 === 0 ? 'wrong-password' : 'close'));
      expect(results.filter((r) => r.sasl)).toHaveLength(3000);
      const wrong = results.filter((_, i) => i % 10 === 0);
      expect(new Set(wrong.map((r) => r.sqlstate))).toEqual(new Set(['28P01']));
      // The name the client is told about is the one looked up: clipped to 63 bytes.
      expect(wrong[0]!.message).toMatch(/^password authentication failed for user "[0-9a-f]{63}"$/);
    } finally {
      clearInterval(watch);
      await admin.end();
    }
    expect(cached.stop()).toBe(500);
    expect(aq.usage.cached).toBeLessThanOrEqual(500);
    expect(running.stop()).toBeLessThanOrEqual(4);
    expect(waiting.stop()).toBeLessThanOrEqual(4 * 16);
    expect(authConnections).toBeLessThanOrEqual(4);
    expect(aq.usage).toMatchObject({ running: 0, waiting: 0, inflight: 0, pools: 1 });
  }, 60_000);
});

describe('a flood of invented database names through a `*` route', () => {
  let relay: Awaited<ReturnType<typeof countingRelay>>;
  let proxy: RunningProxy;
  beforeAll(async () => {
    relay = await countingRelay();
    proxy = await startTestProxy({
      client_tls_sslmode: 'prefer',
      auth_max_concurrent_lookups: 3,
      auth_failure_limit: 0,
      max_client_conn: 1000, // the burst below must reach the lookups, not the connection limits
      databases: { '*': `host=127.0.0.1 port=${relay.port}` },
    });
  });
  afterAll(async () => {
    await proxy.close();
    await relay.close();
  });

  it('opens at most auth_max_concurrent_lookups auth connections at once, and one per name while its 3D000 is remembered', async () => {
    const names = Array.from({ length: 150 }, (_, i) => `invented_${i}_${randomBytes(3).toString('hex')}`);
    // Each name three times in a row: the later two well within MISSING_DATABASE_TTL_MS of the first.
    const results = await inParallel(names.length, 30, async (i) => {
      const tries: Probe[] = [];
      const began = Date.now();
      for (let n = 0; n < 3; n++) tries.push(await probe(proxy.port, 'someone', names[i]!));
      expect(Date.now() - began).toBeLessThan(MISSING_DATABASE_TTL_MS);
      return tries;
    });
    for (const r of results.flat()) expect(r.sqlstate).toBe('3D000');
    expect(results[0]![0]!.message).toBe(`database "${names[0]}" does not exist`);
    expect(relay.maxOpen()).toBeLessThanOrEqual(3);
    expect(relay.total()).toBeLessThanOrEqual(names.length);
    expect(proxy.context.authQuery.usage.pools).toBe(0);
  }, 30_000);

  it('refuses lookups beyond the wait queue at once with 53300 "too many logins in progress"', async () => {
    const before = relay.total();
    // 3 running + 48 waiting: 150 strangers at once leave about 100 without a place.
    const results = await Promise.all(Array.from({ length: 150 }, (_, i) => probe(proxy.port, 'someone', `burst_${i}_${randomBytes(3).toString('hex')}`)));
    const busy = results.filter((r) => r.sqlstate === '53300' && r.message === 'too many logins in progress');
    expect(busy.length).toBeGreaterThan(0);
    expect(results.every((r) => r.sqlstate === '53300' || r.sqlstate === '3D000')).toBe(true);
    // Every refused one cost no upstream connection.
    expect(relay.total() - before).toBeLessThanOrEqual(results.length - busy.length);
    expect(relay.maxOpen()).toBeLessThanOrEqual(3);
  }, 30_000);
});

describe('auth-failure throttling', () => {
  let proxy: RunningProxy;
  beforeAll(async () => {
    proxy = await startTestProxy({ auth_failure_limit: 3, auth_failure_window: 60, auth_failure_block: 2, metrics_port: 0 });
  });
  afterAll(async () => {
    await proxy.close();
  });

  it('refuses an address after 3 wrong passwords, even with the right one, until the block ends; another database is unaffected', async () => {
    const { name, password } = USERS.scram;
    for (let i = 0; i < 3; i++) expect((await connectError(pgOptions(proxy.port, 'app1', name, 'wrong-password'))).code).toBe('28P01');
    const refused = await connectError(pgOptions(proxy.port, 'app1', name, password));
    expect(refused).toMatchObject({ code: '08004', severity: 'FATAL' });
    expect(refused.message).toMatch(/^too many failed login attempts from this address for database "app1"; wait [12] s before trying again$/);
    const blockedAt = Date.now();

    // The block is per database.
    expect(await withClient(pgOptions(proxy.port, 'app2', name, password), async (c) => (await c.query('SELECT db FROM whereami')).rows[0].db)).toBe('app2');

    const metrics = await (await fetch(`http://127.0.0.1:${proxy.metricsPort}/metrics`)).text();
    expect(Number(/^pg_ingress_auth_throttled_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);

    // Poll until the right password works again: only after the block.
    let refusals = 0;
    for (;;) {
      const err = await connectError(pgOptions(proxy.port, 'app1', name, password)).catch(() => null); // null: it logged in
      if (!err) break;
      expect(err.code).toBe('08004');
      refusals++;
      expect(Date.now() - blockedAt).toBeLessThan(10_000);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(Date.now() - blockedAt).toBeGreaterThanOrEqual(1000);
    expect(refusals).toBeGreaterThan(0);
    expect(await withClient(pgOptions(proxy.port, 'app1', name, password), async (c) => (await c.query('SELECT 1 AS one')).rows[0].one)).toBe(1);
  }, 30_000);
});

describe('a login role that is a member of a superuser role', () => {
  let proxy: RunningProxy;
  beforeAll(async () => {
    const { cluster } = testEnv();
    await adminSql(cluster, `DROP ROLE IF EXISTS ${SU_MEMBER.name}; CREATE ROLE ${SU_MEMBER.name} LOGIN PASSWORD '${SU_MEMBER.password}'; GRANT ${USERS.admin.name} TO ${SU_MEMBER.name}`);
    proxy = await startTestProxy();
  });
  afterAll(async () => {
    await proxy.close();
    await adminSql(testEnv().cluster, `DROP ROLE IF EXISTS ${SU_MEMBER.name}`);
  });

  /** Logs in to the cluster directly with serverLogin, keys derived as the proxy would hold them. */
  async function loginDirect(role: { name: string; password: string }) {
    const { cluster } = testEnv();
    const stored = await adminSql(cluster, `SELECT rolpassword FROM pg_authid WHERE rolname = '${role.name}'`);
    const v = parseVerifier(stored) as ScramVerifier;
    const salted = saltedPassword(role.password, v.salt, v.iterations);
    const socket = net.connect(cluster.port, cluster.host);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    try {
      const frames = new FrameQueue(socket, 1 << 20);
      return await serverLogin((b) => socket.write(b), frames, { user: role.name, database: 'app1' }, { kind: 'scram', clientKey: clientKey(salted), serverKey: serverKey(salted) }, 10_000, { checkSuperuserMembership: true });
    } finally {
      socket.destroy();
    }
  }

  it('is reported by serverLogin as superuserMember, and an ordinary role is not', async () => {
    const member = await loginDirect(SU_MEMBER);
    expect(member.params.get('is_superuser')).toBe('off');
    expect(member.superuserMember).toBe(true);
    expect((await loginDirect(USERS.scram)).superuserMember).toBe(false);
  });

  it('is refused with 42501 by default', async () => {
    const err = await connectError(pgOptions(proxy.port, 'app1', SU_MEMBER.name, SU_MEMBER.password));
    expect(err.code).toBe('42501');
  });
});
