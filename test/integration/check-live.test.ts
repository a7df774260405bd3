// `pg-ingress check --config FILE --live`, the real command against the test
// cluster: a good configuration passes with exit 0, and each way the auth setup
// can be wrong prints its own FAIL line in plain words, with exit 1. No line
// ever holds the auth password or a verifier.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { selfSigned } from '../../src/tls/certificates.js';
import { BIN } from '../harness/cli.js';
import { adminSql, freePort, USERS } from '../harness/postgres.js';
import { testEnv } from '../harness/proxy.js';

const run = promisify(execFile);

interface CheckRun {
  code: number;
  lines: string[];
  out: string;
}

/**
 * Writes a config (the auth password file, the test cluster's TLS files unless `ownTls`, then `yaml`)
 * and runs `check --live`.
 */
async function check(yaml: (dir: string) => string[], args: string[] = [], { authPassword = USERS.auth.password as string, ownTls = false } = {}): Promise<CheckRun> {
  const { certFile, keyFile } = testEnv();
  const dir = mkdtempSync(join(tmpdir(), 'pg-ingress-check-'));
  writeFileSync(join(dir, 'auth-password'), `${authPassword}\n`);
  const config = join(dir, 'pg-ingress.yaml');
  const tls = ownTls ? [] : [`client_tls_cert_file: ${certFile}`, `client_tls_key_file: ${keyFile}`];
  writeFileSync(config, ['listen_addr: 127.0.0.1', 'listen_port: 6432', ...tls, `auth_password_file: ${join(dir, 'auth-password')}`, ...yaml(dir)].join('\n'));
  let code = 0;
  let out = '';
  try {
    const r = await run(process.execPath, [BIN, 'check', '--config', config, '--live', ...args], { env: { PATH: process.env.PATH } });
    out = r.stdout + r.stderr;
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    code = e.code;
    out = e.stdout + e.stderr;
  }
  return { code, out, lines: out.split('\n').filter((l) => l !== '') };
}

const server = (): string => `host=${testEnv().cluster.host} port=${testEnv().cluster.port}`;

/** The one line about `entry` that starts with `verdict` and says `words`. */
function lineFor(r: CheckRun, verdict: string, entry: string, words: RegExp): string {
  const found = r.lines.filter((l) => l.startsWith(`${verdict} `) && l.includes(`"${entry}"`) && words.test(l));
  expect(found, r.out).toHaveLength(1);
  return found[0]!;
}

describe('pg-ingress check --live', () => {
  let verifiers: string[] = [];
  beforeAll(async () => {
    verifiers = (await adminSql(testEnv().cluster, `SELECT rolpassword FROM pg_authid WHERE rolname IN ('${USERS.scram.name}', '${USERS.md5.name}', '${USERS.auth.name}')`)).split('\n');
    expect(verifiers).toHaveLength(3);
    // A database without the lookup function, and one whose function the auth role may not run.
    await adminSql(testEnv().cluster, 'CREATE DATABASE check_nofunc');
    await adminSql(testEnv().cluster, 'CREATE DATABASE check_denied');
    const setup = (await run(process.execPath, [BIN, 'init-sql'])).stdout;
    await adminSql(testEnv().cluster, setup, 'check_denied');
    await adminSql(testEnv().cluster, 'REVOKE EXECUTE ON FUNCTION pgbouncer.get_auth(text) FROM pgbouncer_auth', 'check_denied');
    await adminSql(testEnv().cluster, "CREATE ROLE check_nologin NOLOGIN PASSWORD 'nologin-pw'");
  });

  const noSecrets = (r: CheckRun): void => {
    expect(r.out).not.toContain(USERS.auth.password);
    for (const v of verifiers) expect(r.out).not.toContain(v);
  };

  it('a good configuration passes: connects, finds no row for a stranger and a verifier for --user, checks the certificate; exit 0', async () => {
    const r = await check(() => ['databases:', `  app1: ${server()} dbname=app1`, `  app2: ${server()} dbname=app2`], ['--user', USERS.scram.name]);
    expect(r.code, r.out).toBe(0);
    expect(r.lines[0]).toMatch(/^configuration OK: 2 database entries/);
    for (const db of ['app1', 'app2']) {
      lineFor(r, 'ok', db, /connected as auth_user "pgbouncer" \(no TLS\)/); // server_tls_sslmode: disable
      lineFor(r, 'ok', db, /auth_query for a user that does not exist returns no row/);
      lineFor(r, 'ok', db, /auth_query finds "app_scram" with a SCRAM-SHA-256 verifier/);
    }
    expect(r.lines).toContainEqual(expect.stringMatching(/^ok {3}client certificate: names DNS:localhost, IP:127\.0\.0\.1/));
    expect(r.lines).toContainEqual(expect.stringMatching(/^ok {3}client certificate: valid until \S+ \(\d+ days\)/));
    expect(r.lines.filter((l) => l.startsWith('FAIL'))).toEqual([]);
    noSecrets(r);
  });

  it('connects with server_tls_* as auth_query does: verify-full passes with the CA, and FAILs a host the certificate does not name', async () => {
    const { cluster, caFile } = testEnv();
    const r = await check(() => ['server_tls_sslmode: verify-full', `server_tls_ca_file: ${caFile}`, 'databases:', `  app1: ${server()} dbname=app1`, `  other: host=127.0.0.2 port=${cluster.port} dbname=app1`]);
    expect(r.code).toBe(1);
    lineFor(r, 'ok', 'app1', /connected as auth_user "pgbouncer" \(TLS\)/);
    lineFor(r, 'FAIL', 'other', /cannot connect as auth_user "pgbouncer": TLS failed: .*127\.0\.0\.2.*server_tls_ca_file/);
  });

  it('says md5 for an md5 user, and FAILs a --user that auth_query does not find', async () => {
    const md5 = await check(() => ['databases:', `  app1: ${server()} dbname=app1`], ['--user', USERS.md5.name]);
    expect(md5.code, md5.out).toBe(0);
    lineFor(md5, 'ok', 'app1', /finds "app_md5" with an md5 hash/);
    const none = await check(() => ['databases:', `  app1: ${server()} dbname=app1`], ['--user', 'nobody_here']);
    expect(none.code).toBe(1);
    lineFor(none, 'FAIL', 'app1', /auth_query finds no row for "nobody_here"/);
    noSecrets(md5);
  });

  it('a wrong auth password: FAIL "the password is wrong", exit 1', async () => {
    const r = await check(() => ['databases:', `  app1: ${server()} dbname=app1`], [], { authPassword: 'not-the-password' });
    expect(r.code).toBe(1);
    lineFor(r, 'FAIL', 'app1', /cannot connect as auth_user "pgbouncer": the password is wrong/);
    expect(r.out).not.toContain('not-the-password');
  });

  it('each broken entry gets its own FAIL line, and the good one still passes', async () => {
    const { cluster } = testEnv();
    const closed = await freePort();
    const r = await check(
      (dir) => {
        writeFileSync(join(dir, 'userlist.txt'), '"check_nologin" "nologin-pw"\n');
        return [
          `auth_file: ${join(dir, 'userlist.txt')}`,
          'databases:',
          `  app1: ${server()} dbname=app1`,
          `  nofunc: ${server()} dbname=check_nofunc`,
          `  denied: ${server()} dbname=check_denied`,
          `  unreachable: host=127.0.0.1 port=${closed} dbname=app1`,
          `  missing: ${server()} dbname=check_no_such_db`,
          `  nologin: ${server()} dbname=app1 auth_user=check_nologin`,
          '  columns:',
          `    host: ${cluster.host}`,
          `    port: ${cluster.port}`,
          '    dbname: app2',
          '    auth_query: SELECT username FROM pgbouncer.get_auth($1)',
        ];
      },
    );
    expect(r.code, r.out).toBe(1);
    lineFor(r, 'ok', 'app1', /returns no row/);
    const fix = lineFor(r, 'FAIL', 'nofunc', /the function pgbouncer\.get_auth is missing in "check_nofunc"/);
    expect(fix).toContain(`fix with pg-ingress init-sql --database check_nofunc | psql -h ${cluster.host} -p ${cluster.port} -U postgres -d check_nofunc`);
    lineFor(r, 'FAIL', 'denied', /auth_query: permission denied \(permission denied for function get_auth\)/);
    lineFor(r, 'FAIL', 'unreachable', new RegExp(`the host is unreachable: connection refused at 127\\.0\\.0\\.1:${closed}`));
    lineFor(r, 'FAIL', 'missing', /the database "check_no_such_db" does not exist/);
    lineFor(r, 'FAIL', 'nologin', /auth_user "check_nologin": the role "check_nologin" can't log in \(NOLOGIN\)/);
    lineFor(r, 'FAIL', 'columns', /returns the wrong columns \(username\): pg-ingress reads the verifier from a column named "password"/);
    expect(r.lines.filter((l) => l.startsWith('FAIL'))).toHaveLength(6);
    expect(r.out).not.toContain('nologin-pw');
    noSecrets(r);
  });

  it('the init-sql line printed for a missing function fixes it', async () => {
    const { cluster } = testEnv();
    await adminSql(cluster, 'CREATE DATABASE check_fixme');
    const yaml = (): string[] => ['databases:', `  fixme: ${server()} dbname=check_fixme`];
    const before = await check(yaml);
    expect(before.code).toBe(1);
    const line = lineFor(before, 'FAIL', 'fixme', /is missing/);
    const command = /fix with (pg-ingress init-sql .*) \(as a superuser\)$/.exec(line)![1]!;
    await run('sh', ['-c', command.replace(/^pg-ingress/, `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)}`) + ' -X -q -v ON_ERROR_STOP=1'], {
      env: { PATH: process.env.PATH, PGPASSWORD: USERS.superuser.password },
    });
    const after = await check(yaml);
    expect(after.code, after.out).toBe(0);
    lineFor(after, 'ok', 'fixme', /returns no row/);
  });

  it('"*": skipped with the reason without auth_dbname; checked in auth_dbname with it', async () => {
    const skipped = await check(() => ['databases:', `  "*": ${server()}`]);
    expect(skipped.code, skipped.out).toBe(0);
    expect(skipped.lines).toContainEqual(expect.stringMatching(/^skip "\*": users are looked up in whichever database a client names; set auth_dbname/));
    const checked = await check(() => ['auth_dbname: app2', 'databases:', `  "*": ${server()}`], ['--user', USERS.scram.name]);
    expect(checked.code, checked.out).toBe(0);
    lineFor(checked, 'ok', '*', new RegExp(`${testEnv().cluster.port}/app2: auth_query finds "app_scram"`));
  });

  it('the client certificate: a key of another certificate FAILs, one expiring within 14 days warns, none set says self-signed', async () => {
    const db = ['databases:', `  app1: ${server()} dbname=app1`];
    const other = await selfSigned(['other.example']);
    const soon = await selfSigned(['soon.example', '10.0.0.1'], 7);
    const mismatched = await check((dir) => {
      writeFileSync(join(dir, 'other.key'), other.key);
      return [`client_tls_cert_file: ${testEnv().certFile}`, `client_tls_key_file: ${join(dir, 'other.key')}`, ...db];
    }, [], { ownTls: true });
    expect(mismatched.code).toBe(1);
    expect(mismatched.lines).toContainEqual(expect.stringMatching(/^FAIL client certificate: the key in \S+other\.key does not belong to the certificate/));
    expect(mismatched.out).not.toContain(other.key.split('\n')[1]!);

    const expiring = await check((dir) => {
      writeFileSync(join(dir, 'soon.pem'), soon.cert);
      writeFileSync(join(dir, 'soon.key'), soon.key);
      return [`client_tls_cert_file: ${join(dir, 'soon.pem')}`, `client_tls_key_file: ${join(dir, 'soon.key')}`, ...db];
    }, [], { ownTls: true });
    expect(expiring.code, expiring.out).toBe(0);
    expect(expiring.lines).toContainEqual(expect.stringMatching(/^warn client certificate: expires in 6 days/));
    expect(expiring.lines).toContainEqual(expect.stringMatching(/^ok {3}client certificate: names DNS:soon\.example, IP:10\.0\.0\.1/));

    const unreadable = await check(() => ['client_tls_cert_file: /nonexistent/cert.pem', `client_tls_key_file: ${testEnv().keyFile}`, ...db], [], { ownTls: true });
    expect(unreadable.code).toBe(1);
    expect(unreadable.lines).toContainEqual('FAIL client certificate: client_tls_cert_file "/nonexistent/cert.pem" cannot be read (ENOENT)');

    const none = await check(() => db, [], { ownTls: true });
    expect(none.code, none.out).toBe(0);
    expect(none.lines).toContainEqual(expect.stringMatching(/^warn client certificate: client_tls_cert_file and client_tls_key_file are not set, so pg-ingress makes a self-signed certificate/));
  });

  it('an invalid configuration still exits 2 before any connection', async () => {
    const r = await check(() => ['databases:', '  app1: host=127.0.0.1 port=notaport']);
    expect(r.code).toBe(2);
    expect(r.lines.some((l) => /^(ok|FAIL) /.test(l))).toBe(false);
  });
});
