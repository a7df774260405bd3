// Logins through the proxy with real clients: SCRAM pass-through, md5, trust
// upstream, and every refusal with its SQLSTATE.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../../src/proxy.js';
import { USERS } from '../harness/postgres.js';
import { connectError, conninfo, pgOptions, psql, startTestProxy, testEnv, withClient } from '../harness/proxy.js';

let proxy: RunningProxy;

beforeAll(async () => {
  proxy = await startTestProxy();
});
afterAll(async () => {
  await proxy.close();
});

describe('login through TLS', () => {
  it('logs a SCRAM user in with psql sslmode=verify-full, the password known only to Postgres', async () => {
    const { caFile } = testEnv();
    const r = await psql(conninfo(proxy.port, 'app1', USERS.scram.name, `sslmode=verify-full sslrootcert=${caFile}`), 'SELECT current_user, db, ssl FROM whereami, pg_stat_ssl WHERE pid = pg_backend_pid()', {
      PGPASSWORD: USERS.scram.password,
    });
    expect(r.stderr).toBe('');
    // Upstream is plaintext: the proxy terminates TLS.
    expect(r.stdout).toBe(`${USERS.scram.name}|app1|f`);
  });

  it('binds SCRAM to the TLS channel when psql requires it (SCRAM-SHA-256-PLUS, tls-server-end-point)', async () => {
    const r = await psql(conninfo(proxy.port, 'app1', USERS.scram.name, 'sslmode=require channel_binding=require'), 'SELECT current_user', { PGPASSWORD: USERS.scram.password });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(USERS.scram.name);
    const wrong = await psql(conninfo(proxy.port, 'app1', USERS.scram.name, 'sslmode=require channel_binding=require'), 'SELECT 1', { PGPASSWORD: 'wrong' });
    expect(wrong.stderr).toMatch(/password authentication failed/);
  });

  it('logs an md5 user in with node-postgres', async () => {
    const row = await withClient(pgOptions(proxy.port, 'app1', USERS.md5.name, USERS.md5.password), async (c) => (await c.query('SELECT current_user AS u')).rows[0]);
    expect(row.u).toBe(USERS.md5.name);
  });

  it('logs in where the upstream trusts the user, after checking the password itself', async () => {
    const row = await withClient(pgOptions(proxy.port, 'app2', USERS.trust.name, USERS.trust.password), async (c) => (await c.query('SELECT current_user AS u, db FROM whereami')).rows[0]);
    expect(row).toEqual({ u: USERS.trust.name, db: 'app2' });
    const bad = await connectError(pgOptions(proxy.port, 'app2', USERS.trust.name, 'wrong'));
    expect(bad.code).toBe('28P01');
  });
});

describe('refusals', () => {
  it('answers a wrong password with 28P01', async () => {
    const err = await connectError(pgOptions(proxy.port, 'app1', USERS.scram.name, 'not-the-password'));
    expect(err).toMatchObject({ code: '28P01', severity: 'FATAL', message: `password authentication failed for user "${USERS.scram.name}"` });
  });

  it('answers a wrong md5 password with 28P01', async () => {
    const err = await connectError(pgOptions(proxy.port, 'app1', USERS.md5.name, 'not-the-password'));
    expect(err.code).toBe('28P01');
  });

  it('answers an unknown user exactly like a wrong password', async () => {
    const err = await connectError(pgOptions(proxy.port, 'app1', 'nobody_here', 'whatever'));
    expect(err).toMatchObject({ code: '28P01', message: 'password authentication failed for user "nobody_here"' });
  });

  it('answers an unknown database with 3D000', async () => {
    const err = await connectError(pgOptions(proxy.port, 'nosuchdb', USERS.scram.name, USERS.scram.password));
    expect(err).toMatchObject({ code: '3D000', message: 'database "nosuchdb" does not exist' });
  });

  it('refuses plaintext under client_tls_sslmode=require', async () => {
    const err = await connectError(pgOptions(proxy.port, 'app1', USERS.scram.name, USERS.scram.password, false));
    expect(err.code).toBe('28000');
    expect(err.message).toMatch(/SSL required/);
    const r = await psql(conninfo(proxy.port, 'app1', USERS.scram.name, 'sslmode=disable'), 'SELECT 1', { PGPASSWORD: USERS.scram.password });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/SSL required/);
  });

  it('refuses a superuser with an explanation', async () => {
    const err = await connectError(pgOptions(proxy.port, 'app1', USERS.admin.name, USERS.admin.password));
    expect(err.code).toBe('42501');
    expect(err.message).toMatch(/superuser "admin_super" may not log in through pg-ingress/);
  });

  it('refuses replication connections', async () => {
    const r = await psql(conninfo(proxy.port, 'app1', USERS.scram.name, 'sslmode=require replication=database'), 'IDENTIFY_SYSTEM', { PGPASSWORD: USERS.scram.password });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/replication connections are not supported/);
  });

  it('never puts a password in an error message', async () => {
    const err = await connectError(pgOptions(proxy.port, 'app1', USERS.scram.name, 'hunter2-leak-check'));
    expect(err.message).not.toMatch(/hunter2|scram-secret|SCRAM-SHA-256\$/);
  });
});
