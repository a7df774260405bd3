// What operators meet: the upstream down, a broken auth_user setup, limits,
// policy switches, TLS modes and certificate rotation.
import { mkdtempSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { RunningProxy } from '../../src/proxy.js';
import { createCa } from '../../src/tls/certificates.js';
import { until } from '../harness/poll.js';
import { adminSql, freePort, USERS } from '../harness/postgres.js';
import { connectError, conninfo, LogCapture, pgOptions, psql, startTestProxy, testEnv, withClient } from '../harness/proxy.js';

let proxy: RunningProxy | null = null;
afterEach(async () => {
  await proxy?.close();
  proxy = null;
});

const scram = USERS.scram;
const select1 = (port: number, db = 'app1', ssl: pg.ClientConfig['ssl'] | 'ca' = 'ca'): Promise<number> =>
  withClient(pgOptions(port, db, scram.name, scram.password, ssl), async (c) => (await c.query('SELECT 1 AS one')).rows[0].one as number);

describe('upstream failures', () => {
  it('answers 08006 quickly when the upstream server is down', async () => {
    const deadPort = await freePort();
    proxy = await startTestProxy({ databases: { gone: `host=127.0.0.1 port=${deadPort} dbname=app1` }, server_connect_timeout: 3 });
    const started = Date.now();
    const err = await connectError(pgOptions(proxy.port, 'gone', scram.name, scram.password));
    expect(err.code).toBe('08006');
    expect(err.message).toMatch(/could not connect to the database server/);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('tells the client little and the operator exactly what to fix when auth_user cannot log in', async () => {
    const logs = new LogCapture();
    proxy = await startTestProxy({ auth_password: 'wrong-auth-password' }, {}, logs);
    const err = await connectError(pgOptions(proxy.port, 'app1', scram.name, scram.password));
    expect(err.code).toBe('08006');
    expect(err.message).toMatch(/auth_query lookup failed/);
    expect(err.message).not.toMatch(/wrong-auth-password/);
    const line = logs.lines.find((l) => String(l.msg).startsWith('auth_query failed'));
    expect(line?.msg).toMatch(/check auth_password/);
    expect(logs.text).not.toMatch(/wrong-auth-password|scram-secret-pw/);
  });

  it('says to run init-sql when the lookup function is missing', async () => {
    const { cluster } = testEnv();
    await adminSql(cluster, 'DROP DATABASE IF EXISTS nofunc');
    await adminSql(cluster, 'CREATE DATABASE nofunc');
    const logs = new LogCapture();
    proxy = await startTestProxy({ auth_dbname: 'nofunc' }, {}, logs);
    const err = await connectError(pgOptions(proxy.port, 'app1', scram.name, scram.password));
    expect(err.code).toBe('08006');
    const line = logs.lines.find((l) => String(l.msg).startsWith('auth_query failed'));
    expect(line?.msg).toMatch(/pg-ingress init-sql/);
  });
});

describe('limits', () => {
  it('refuses clients beyond max_client_conn with 53300', async () => {
    proxy = await startTestProxy({ max_client_conn: 2 });
    const held = [new pg.Client(pgOptions(proxy.port, 'app1', scram.name, scram.password)), new pg.Client(pgOptions(proxy.port, 'app2', scram.name, scram.password))];
    for (const c of held) await c.connect();
    try {
      const err = await connectError(pgOptions(proxy.port, 'app1', scram.name, scram.password, false));
      expect(err.code).toBe('53300');
    } finally {
      for (const c of held) await c.end();
    }
  });

  it('gives up waiting for a server after query_wait_timeout with a clear error', async () => {
    const { cluster } = testEnv();
    proxy = await startTestProxy({ query_wait_timeout: 1, databases: { app1: `host=${cluster.host} port=${cluster.port} dbname=app1 pool_size=1` } });
    const holder = new pg.Client(pgOptions(proxy.port, 'app1', scram.name, scram.password));
    await holder.connect();
    try {
      const started = Date.now();
      const err = await connectError(pgOptions(proxy.port, 'app1', scram.name, scram.password));
      expect(err.code).toBe('53300');
      expect(err.message).toMatch(/query_wait_timeout/);
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    } finally {
      await holder.end();
    }
  });
});

describe('policy', () => {
  it('lets a superuser in when allow_superuser is on', async () => {
    proxy = await startTestProxy({ allow_superuser: true });
    const su = await withClient(pgOptions(proxy.port, 'app1', USERS.admin.name, USERS.admin.password), async (c) => (await c.query('SHOW is_superuser')).rows[0].is_superuser as string);
    expect(su).toBe('on');
  });
});

describe('TLS modes and certificates', () => {
  it('accepts plaintext and TLS under prefer', async () => {
    proxy = await startTestProxy({ client_tls_sslmode: 'prefer' });
    expect(await select1(proxy.port, 'app1', false)).toBe(1);
    expect(await select1(proxy.port)).toBe(1);
  });

  it('answers SSLRequest with N under disable', async () => {
    proxy = await startTestProxy({ client_tls_sslmode: 'disable' });
    expect(await select1(proxy.port, 'app1', false)).toBe(1);
    const r = await psql(conninfo(proxy.port, 'app1', scram.name, 'sslmode=require'), 'SELECT 1', { PGPASSWORD: scram.password });
    expect(r.stderr).toMatch(/server does not support SSL/);
  });

  it('serves a generated self-signed certificate when none is configured', async () => {
    proxy = await startTestProxy({ client_tls_cert_file: null, client_tls_key_file: null });
    const r = await psql(conninfo(proxy.port, 'app1', scram.name, 'sslmode=require'), 'SELECT 7', { PGPASSWORD: scram.password });
    expect(r.stdout).toBe('7');
  });

  it('picks up a rotated certificate without a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pg-ingress-rotate-'));
    const [oldCa, newCa] = [await createCa('old CA'), await createCa('new CA')];
    const write = async (ca: typeof oldCa): Promise<void> => {
      const leaf = await ca.issue(['localhost', '127.0.0.1']);
      writeFileSync(join(dir, 'tls.crt'), leaf.cert);
      writeFileSync(join(dir, 'tls.key'), leaf.key);
      writeFileSync(join(dir, 'ca.crt'), ca.cert);
    };
    await write(oldCa);
    proxy = await startTestProxy({ client_tls_cert_file: join(dir, 'tls.crt'), client_tls_key_file: join(dir, 'tls.key') });
    const verified = (): Promise<number> => select1(proxy!.port, 'app1', { ca: readFileSync(join(dir, 'ca.crt'), 'utf8') });
    expect(await verified()).toBe(1);
    const held = new pg.Client(pgOptions(proxy.port, 'app1', scram.name, scram.password, { ca: oldCa.cert }));
    await held.connect();
    const written = statSync(join(dir, 'tls.crt')).mtime;
    await write(newCa);
    // Rewritten in place within the filesystem's timestamp granularity, the files could keep
    // their mtime; date them 2 s later, as a later write would be, instead of sleeping for it.
    const later = new Date(written.getTime() + 2000);
    for (const file of ['tls.key', 'tls.crt']) utimesSync(join(dir, file), later, later);
    // The watcher stats every 2 s.
    await until('a client verifying against the new CA', () => verified().then(() => true, () => false), { timeoutMs: 8000 });
    // The connection made under the old certificate is still served.
    expect((await held.query('SELECT 3 AS n')).rows[0].n).toBe(3);
    await held.end();
  });
});
