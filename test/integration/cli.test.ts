// The installed command: `pg-ingress --config FILE` runs the proxy a user
// connects to with psql; `init-sql` and `check` help set it up.
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { freePort, USERS } from '../harness/postgres.js';
import { conninfo, pgOptions, psql, testEnv } from '../harness/proxy.js';

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

  it('runs two workers on one port, and a cancel reaches the right worker whichever accepts it', async () => {
    const { cluster, certFile, keyFile } = testEnv();
    const dir = mkdtempSync(join(tmpdir(), 'pg-ingress-cli-'));
    const port = await freePort();
    writeFileSync(
      join(dir, 'pg-ingress.yaml'),
      [
        'listen_addr: 127.0.0.1',
        `listen_port: ${port}`,
        'workers: 2',
        'pool_mode: transaction',
        `client_tls_cert_file: ${certFile}`,
        `client_tls_key_file: ${keyFile}`,
        'databases:',
        `  "*": host=${cluster.host} port=${cluster.port}`,
      ].join('\n'),
    );
    const child = spawn(process.execPath, [BIN, '--config', join(dir, 'pg-ingress.yaml')], {
      env: { PATH: process.env.PATH, PG_INGRESS_LOG_LEVEL: 'info', PG_INGRESS_AUTH_PASSWORD: USERS.auth.password },
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const clients: pg.Client[] = [];
    try {
      for (let i = 0; i < 100 && (out.match(/pg-ingress listening/g) ?? []).length < 2; i++) await new Promise((r) => setTimeout(r, 100));
      expect((out.match(/pg-ingress listening/g) ?? []).length).toBe(2);
      for (let i = 0; i < 4; i++) {
        const c = new pg.Client({ ...pgOptions(port, 'app1', USERS.scram.name, USERS.scram.password) });
        await c.connect();
        clients.push(c);
      }
      const workersSeen = new Set(clients.map((c) => (c as unknown as { processID: number }).processID >>> 24));
      expect([...workersSeen].sort()).toEqual([1, 2]);
      for (const c of clients) {
        const started = Date.now();
        const q = c.query('SELECT pg_sleep(10)');
        await new Promise((r) => setTimeout(r, 200));
        const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
        const cancel = Buffer.alloc(16);
        cancel.writeInt32BE(16, 0);
        cancel.writeInt32BE(80877102, 4);
        cancel.writeInt32BE(processID, 8);
        cancel.writeInt32BE(secretKey, 12);
        // Several cancel connections: round-robin hands them to both workers.
        for (let k = 0; k < 2; k++) net.connect(port, '127.0.0.1', function (this: net.Socket) { this.end(cancel); }).on('error', () => undefined);
        await expect(q).rejects.toMatchObject({ code: '57014' });
        expect(Date.now() - started).toBeLessThan(5000);
      }
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
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
