// server_tls_sslmode and friends against the real test cluster (ssl = on, a
// certificate from the test CA naming localhost and 127.0.0.1 but not
// 127.0.0.2). Every claim is checked from PostgreSQL's side: pg_stat_ssl for
// the backend the pooled connection uses.
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { saltedPassword, clientKey, serverKey } from '../../src/auth/scram.js';
import { parseVerifier, type ScramVerifier } from '../../src/auth/verifier.js';
import { FrameQueue } from '../../src/protocol/frame-queue.js';
import { serverLogin, ServerLoginError } from '../../src/pool/server-login.js';
import { negotiateServerTls } from '../../src/pool/server-tls.js';
import type { RunningProxy } from '../../src/proxy.js';
import { createCa } from '../../src/tls/certificates.js';
import { LogCapture, pgOptions, startTestProxy, testEnv, withClient } from '../harness/proxy.js';
import { adminSql, USERS } from '../harness/postgres.js';
import { until } from '../harness/poll.js';

let proxy: RunningProxy | null = null;
afterEach(async () => {
  await proxy?.close();
  proxy = null;
});

function dsn(host: string, db = 'app1'): string {
  return `host=${host} port=${testEnv().cluster.port} dbname=${db}`;
}

async function start(overrides: Record<string, unknown>, logs?: LogCapture): Promise<RunningProxy> {
  proxy = await startTestProxy({ server_login_retry: 0, ...overrides }, {}, logs);
  return proxy;
}

/** Whether PostgreSQL sees TLS on the backend that serves `user`'s connection through the proxy. */
async function backendSsl(p: RunningProxy, user: { name: string; password: string }, db = 'app1'): Promise<string> {
  return withClient(pgOptions(p.port, db, user.name, user.password), async (c) => {
    const { rows } = await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    return adminSql(testEnv().cluster, `SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.pid = ${rows[0]!.pid}`);
  });
}

const wrongCa = async (): Promise<string> => (await createCa('some other CA')).cert;

describe('server_tls_sslmode', () => {
  it('disable (the default) connects in plaintext', async () => {
    const p = await start({});
    expect(p.context.config.server_tls_sslmode).toBe('disable');
    expect(await backendSsl(p, USERS.scram)).toBe('f');
  });

  it('require encrypts, and SCRAM, md5 and trust logins all pass through over TLS', async () => {
    const p = await start({ server_tls_sslmode: 'require' });
    expect(await backendSsl(p, USERS.scram)).toBe('t');
    expect(await backendSsl(p, USERS.md5)).toBe('t');
    expect(await backendSsl(p, USERS.trust)).toBe('t');
  });

  it('prefer and allow encrypt when the server offers TLS', async () => {
    for (const mode of ['prefer', 'allow']) {
      const p = await start({ server_tls_sslmode: mode });
      expect(await backendSsl(p, USERS.scram)).toBe('t');
      await p.close();
      proxy = null;
    }
  });

  it('verify-full accepts a certificate from server_tls_ca_file that names the host', async () => {
    const p = await start({ server_tls_sslmode: 'verify-full', server_tls_ca_file: testEnv().caFile, databases: { app1: dsn('localhost') } });
    expect(await backendSsl(p, USERS.scram)).toBe('t');
  });

  it('verify-ca does not check the name: 127.0.0.2 is not in the certificate', async () => {
    const p = await start({ server_tls_sslmode: 'verify-ca', server_tls_ca_file: testEnv().caFile, databases: { app1: dsn('127.0.0.2') } });
    expect(await backendSsl(p, USERS.scram)).toBe('t');
  });

  it('verify-full refuses a host the certificate does not name, says so to the client and why in the log, and other databases still work', async () => {
    const logs = new LogCapture();
    const p = await start({ server_tls_sslmode: 'verify-full', server_tls_ca_file: testEnv().caFile, databases: { app1: dsn('127.0.0.2'), app2: dsn('127.0.0.1', 'app2') } }, logs);
    // The user lookup is the first connection to that server: it is refused there.
    const err = await refusal(p, 'app1');
    expect(err.message).toBe('could not connect to the database server for "app1": TLS to it failed');
    expect(err.detail).toMatch(/server_tls_sslmode is verify-full/);
    await until('the certificate error in the log', () => logs.lines.some((l) => l.msg?.toString().startsWith('auth_query failed') && /127\.0\.0\.2.*(altnames|IP)/.test(String(l.error))));
    expect(await backendSsl(p, USERS.scram, 'app2')).toBe('t');
  });

  it('a server connection whose certificate fails verification is refused with the reason; the file is read again for each new connection', async () => {
    const caFile = join(mkdtempSync(join(tmpdir(), 'pg-ingress-ca-')), 'ca.pem');
    copyFileSync(testEnv().caFile, caFile);
    const p = await start({ server_tls_sslmode: 'verify-full', server_tls_ca_file: caFile, databases: { app1: dsn('localhost') } });
    // The first client holds its server (session mode) and caches the user's verifier.
    await withClient(pgOptions(p.port, 'app1', USERS.scram.name, USERS.scram.password), async (first) => {
      writeFileSync(caFile, await wrongCa()); // the mounted Secret now names another CA
      const err = await refusal(p, 'app1');
      expect(err.message).toBe('could not connect to the database server');
      expect(err.detail).toMatch(/TLS to the server at localhost failed \(server_tls_sslmode verify-full\): .*(unable to|self.signed|certificate)/i);
      expect((await first.query('SELECT 1 AS one')).rows[0].one).toBe(1); // unaffected
      copyFileSync(testEnv().caFile, caFile); // and back
      expect(await backendSsl(p, USERS.scram)).toBe('t');
    });
  });

  it('verify-ca refuses a certificate from another CA', async () => {
    const caFile = join(mkdtempSync(join(tmpdir(), 'pg-ingress-wrong-ca-')), 'ca.pem');
    writeFileSync(caFile, await wrongCa());
    const p = await start({ server_tls_sslmode: 'verify-ca', server_tls_ca_file: caFile });
    expect((await refusal(p, 'app1')).message).toMatch(/TLS to it failed/);
  });

  it('auth_query runs over TLS too', async () => {
    const p = await start({ server_tls_sslmode: 'require' });
    await withClient(pgOptions(p.port, 'app1', USERS.scram.name, USERS.scram.password), (c) => c.query('SELECT 1'));
    const ssl = await adminSql(testEnv().cluster, "SELECT DISTINCT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'pg-ingress auth_query' AND a.datname = 'app1'");
    expect(ssl).toBe('t');
  });
});

describe('SCRAM channel binding to the server', () => {
  /** Logs in directly over TLS as the proxy would, with `hash` as the binding data (null: the real one). */
  async function loginOverTls(hash: Buffer | null) {
    const { cluster } = testEnv();
    const stored = await adminSql(cluster, `SELECT rolpassword FROM pg_authid WHERE rolname = '${USERS.scram.name}'`);
    const v = parseVerifier(stored) as ScramVerifier;
    const salted = saltedPassword(USERS.scram.password, v.salt, v.iterations);
    const plain = net.connect(cluster.port, cluster.host);
    await new Promise<void>((resolve, reject) => plain.once('connect', resolve).once('error', reject));
    const { socket, endpointHash } = await negotiateServerTls(plain, cluster.host, { sslmode: 'require', caFile: null, certFile: null, keyFile: null, protocols: ['tlsv1.2', 'tlsv1.3'], ciphers: 'default' });
    try {
      expect(endpointHash).not.toBeNull();
      const frames = new FrameQueue(socket, 1 << 20);
      return await serverLogin((b) => socket.write(b), frames, { user: USERS.scram.name, database: 'app1' }, { kind: 'scram', clientKey: clientKey(salted), serverKey: serverKey(salted) }, 10_000, { endpointHash: hash ?? endpointHash });
    } finally {
      socket.destroy();
    }
  }

  it('binds to the server certificate (SCRAM-SHA-256-PLUS): PostgreSQL checks the binding data', async () => {
    await expect(loginOverTls(null)).resolves.toMatchObject({ params: expect.any(Map) });
    const refused = await loginOverTls(Buffer.alloc(32, 7)).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ServerLoginError);
    expect((refused as ServerLoginError).message).toMatch(/channel binding/i);
  });
});

/** The ErrorResponse a client gets when the proxy cannot reach its server. */
async function refusal(p: RunningProxy, db: string): Promise<{ message: string; detail: string }> {
  const client = new pg.Client(pgOptions(p.port, db, USERS.scram.name, USERS.scram.password));
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    const e = err as { code?: string; message: string; detail?: string };
    expect(e.code).toBe('08006');
    return { message: e.message, detail: e.detail ?? '' };
  } finally {
    await client.end().catch(() => undefined);
  }
  throw new Error('expected the connection to fail');
}
