// The installed command: `pg-ingress --config FILE` runs the proxy a user
// connects to with psql; `init-sql` and `check` help set it up.
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { freePort, USERS } from '../harness/postgres.js';
import { conninfo, psql, testEnv } from '../harness/proxy.js';

const run = promisify(execFile);
const BIN = join(process.cwd(), 'bin', 'pg-ingress.js');

describe('pg-ingress command', () => {
  it('runs from a YAML file and environment, and serves psql over verified TLS', async () => {
    const { cluster, certFile, keyFile, caFile } = testEnv();
    const dir = mkdtempSync(join(tmpdir(), 'pg-ingress-cli-'));
    const port = await freePort();
    writeFileSync(join(dir, 'auth-password'), `${USERS.auth.password}\n`);
    writeFileSync(
      join(dir, 'pg-ingress.yaml'),
      [
        'listen_addr: 127.0.0.1',
        `listen_port: ${port}`,
        `client_tls_cert_file: ${certFile}`,
        `client_tls_key_file: ${keyFile}`,
        `auth_password_file: ${join(dir, 'auth-password')}`,
        'databases:',
        `  "*": host=${cluster.host} port=${cluster.port}`,
      ].join('\n'),
    );
    const child = spawn(process.execPath, [BIN, '--config', join(dir, 'pg-ingress.yaml')], { env: { PATH: process.env.PATH, PG_INGRESS_LOG_LEVEL: 'info' } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      for (let i = 0; i < 100 && !out.includes('pg-ingress listening'); i++) await new Promise((r) => setTimeout(r, 100));
      expect(out).toContain('pg-ingress listening');
      const r = await psql(conninfo(port, 'app2', USERS.scram.name, `sslmode=verify-full sslrootcert=${caFile}`), 'SELECT db FROM whereami', { PGPASSWORD: USERS.scram.password });
      expect(r.stdout).toBe('app2');
      expect(out).not.toContain(USERS.auth.password);
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.on('exit', resolve));
    }
  });

  it('prints least-privilege auth_query SQL', async () => {
    const { stdout } = await run(process.execPath, [BIN, 'init-sql']);
    expect(stdout).toContain('SECURITY DEFINER');
    expect(stdout).toContain('SET search_path = pg_catalog, pg_temp');
    expect(stdout).toContain('REVOKE ALL ON FUNCTION pgbouncer.get_auth(TEXT) FROM PUBLIC');
    expect(stdout).not.toMatch(/GRANT SELECT ON pg_shadow/i);
  });

  it('check names the file and key of a bad setting and exits 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pg-ingress-cli-'));
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'listen_port: lots\n');
    const err = await run(process.execPath, [BIN, 'check', '--config', file]).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(2);
    expect(err?.stderr).toContain(`${file}: listen_port`);
  });
});
