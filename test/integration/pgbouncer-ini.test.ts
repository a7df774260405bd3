// A pgbouncer.ini written as PgBouncer's documentation writes one (doc/config.md
// "Examples", etc/pgbouncer.ini), with its userlist.txt, runs unchanged through
// the real CLI: `*`, a quoted per-database entry, [users], client TLS from an
// %include, and a SCRAM user served from auth_file while others go to auth_query.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, listeningCount } from '../harness/cli.js';
import { until } from '../harness/poll.js';
import { adminSql, freePort, USERS } from '../harness/postgres.js';
import { conninfo, psql, testEnv } from '../harness/proxy.js';

describe('a pgbouncer.ini from PgBouncer’s documentation, unchanged', () => {
  let child: ChildProcess;
  let port: number;
  let out = '';
  let verifier: string;

  beforeAll(async () => {
    const { cluster, certFile, keyFile, caFile } = testEnv();
    const dir = mkdtempSync(join(tmpdir(), 'pg-ingress-ini-'));
    port = await freePort();
    // The file holds app_scram's real verifier, as etc/mkauth.py writes it from pg_authid.
    verifier = await adminSql(cluster, `SELECT rolpassword FROM pg_authid WHERE rolname = '${USERS.scram.name}'`);
    expect(verifier).toMatch(/^SCRAM-SHA-256\$/);
    writeFileSync(join(dir, 'userlist.txt'), [`"${USERS.auth.name}" "${USERS.auth.password}"`, `"${USERS.scram.name}" "${verifier}"`, ''].join('\n'));
    writeFileSync(
      join(dir, 'tls.ini'),
      [';; TLS settings for accepting clients', 'client_tls_sslmode = require', `client_tls_key_file = ${keyFile}`, `client_tls_cert_file = ${certFile}`, `client_tls_ca_file = ${caFile}`, ''].join('\n'),
    );
    writeFileSync(
      join(dir, 'pgbouncer.ini'),
      [
        ';;; PgBouncer configuration file',
        '[databases]',
        ';; redirect "my app" to app2, with its own pool settings',
        `"my app" = host=${cluster.host} port=${cluster.port} dbname=app2 pool_mode=transaction pool_size=2`,
        ';; fallback connect string',
        `* = host=${cluster.host} port=${cluster.port}`,
        '',
        ';; User-specific configuration',
        '[users]',
        `${USERS.scram.name} = pool_mode=session max_user_connections=10`,
        '',
        '[pgbouncer]',
        'logfile = /var/log/pgbouncer/pgbouncer.log',
        'pidfile = /var/run/pgbouncer/pgbouncer.pid',
        'listen_addr = 127.0.0.1',
        `listen_port = ${port}`,
        'unix_socket_dir = /var/run/postgresql',
        'auth_type = scram-sha-256',
        `auth_file = ${join(dir, 'userlist.txt')}`,
        `auth_user = ${USERS.auth.name}`,
        // Users in auth_file never reach auth_query; this one would not find app_scram, so only the file can log it in.
        `auth_query = SELECT username, password FROM pgbouncer.get_auth($1) WHERE username <> '${USERS.scram.name}'`,
        'admin_users = someuser',
        'stats_users = stat_collector',
        'pool_mode = session',
        'server_reset_query = DISCARD ALL',
        'max_client_conn = 100',
        'default_pool_size = 20',
        '%include tls.ini',
        '',
      ].join('\n'),
    );
    child = spawn(process.execPath, [BIN, '--config', join(dir, 'pgbouncer.ini')], { env: { PATH: process.env.PATH, PG_INGRESS_METRICS_PORT: 'off' } });
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await until('the CLI listening', () => {
        if (child.exitCode !== null) throw new Error(`the CLI exited (${child.exitCode})`);
        return listeningCount(out) >= 1;
      }, { timeoutMs: 15_000, intervalMs: 50 });
    } catch (err) {
      child.kill('SIGKILL');
      throw new Error(`${(err as Error).message}; its output:\n${out}`);
    }
  });

  afterAll(async () => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM'); // no client is left, so the drain ends at once
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  });

  const verified = () => `sslmode=verify-full sslrootcert=${testEnv().caFile}`;

  it('serves the SCRAM user from auth_file over verified TLS, through the * entry', async () => {
    const r = await psql(conninfo(port, 'app1', USERS.scram.name, verified()), 'SELECT db FROM whereami', { PGPASSWORD: USERS.scram.password });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('app1');
  });

  it('routes the quoted per-database entry to its dbname', async () => {
    const r = await psql(`host=localhost port=${port} dbname='my app' user=${USERS.scram.name} ${verified()}`, 'SELECT db FROM whereami', { PGPASSWORD: USERS.scram.password });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('app2');
  });

  it('refuses a wrong password for the auth_file user as PostgreSQL would', async () => {
    const r = await psql(conninfo(port, 'app1', USERS.scram.name, verified()), 'SELECT 1', { PGPASSWORD: 'wrong' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`password authentication failed for user "${USERS.scram.name}"`);
  });

  it('looks users not in auth_file up with auth_query, as auth_user with the password auth_file gave it', async () => {
    const r = await psql(conninfo(port, 'app2', USERS.md5.name, verified()), 'SELECT current_user', { PGPASSWORD: USERS.md5.password });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(USERS.md5.name);
  });

  it('refuses clients without TLS (client_tls_sslmode from the %include)', async () => {
    const r = await psql(conninfo(port, 'app1', USERS.scram.name, 'sslmode=disable'), 'SELECT 1', { PGPASSWORD: USERS.scram.password });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('SSL required');
  });

  it('warned once at start about each setting without effect, and never printed a secret', () => {
    for (const key of ['logfile', 'pidfile', 'unix_socket_dir', 'client_tls_ca_file']) {
      expect(out.match(new RegExp(`${key}: accepted, has no effect in pg-ingress`, 'g')), key).toHaveLength(1);
    }
    expect(out).not.toContain('auth_type: accepted'); // scram-sha-256 is what pg-ingress does anyway
    expect(out).not.toContain(USERS.auth.password);
    expect(out).not.toContain(verifier.split('$')[2]!);
  });
});
