// A container that ran bitnami/pgbouncer keeps its environment: the real CLI,
// started with no --config and only the image's variables (as its README's
// examples set them, pointed at the test cluster), serves SCRAM users.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN, listeningCount } from '../harness/cli.js';
import { until } from '../harness/poll.js';
import { adminSql, freePort, USERS } from '../harness/postgres.js';
import { connectError, conninfo, pgOptions, psql, testEnv, withClient } from '../harness/proxy.js';

interface Started {
  port: number;
  output(): string;
  stop(): Promise<void>;
}

/** `pg-ingress` with exactly `env` (and PATH), no arguments; resolves once it listens. */
async function startWithEnv(env: Record<string, string>): Promise<Started> {
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, [BIN], {
    env: {
      PATH: process.env.PATH,
      PGBOUNCER_PORT: String(port),
      PGBOUNCER_LISTEN_ADDRESS: '127.0.0.1',
      // The test's own needs, not the migration's: runs side by side, on a shared machine.
      PG_INGRESS_METRICS_PORT: 'off',
      PG_INGRESS_WORKERS: '1',
      ...env,
    },
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    await until('pg-ingress listening', () => {
      if (child.exitCode !== null) throw new Error(`pg-ingress exited with ${child.exitCode}`);
      return listeningCount(out) >= 1;
    }, { timeoutMs: 15_000, intervalMs: 50 });
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}; its output:\n${out}`);
  }
  return {
    port,
    output: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGQUIT');
      await exited;
    },
  };
}

describe('the Bitnami pgbouncer image environment', () => {
  it("the README's example (POSTGRESQL_HOST, POSTGRESQL_PASSWORD, PGBOUNCER_DATABASE, client TLS) serves a SCRAM user", async () => {
    const { cluster, caFile, certFile, keyFile } = testEnv();
    const proxy = await startWithEnv({
      // docker-compose-password.yml: the backend and the password of its default user, postgres.
      POSTGRESQL_HOST: cluster.host,
      POSTGRESQL_PORT: String(cluster.port),
      POSTGRESQL_PASSWORD: USERS.superuser.password,
      // "Exposed database", and "Securing PgBouncer traffic".
      PGBOUNCER_DATABASE: 'app1',
      PGBOUNCER_CLIENT_TLS_SSLMODE: 'require',
      PGBOUNCER_CLIENT_TLS_CERT_FILE: certFile,
      PGBOUNCER_CLIENT_TLS_KEY_FILE: keyFile,
      PGBOUNCER_POOL_MODE: 'transaction',
      PGBOUNCER_AUTH_TYPE: 'scram-sha-256',
      PGBOUNCER_EXTRA_FLAGS: '--verbose',
    });
    try {
      const r = await psql(conninfo(proxy.port, 'app1', USERS.scram.name, `sslmode=verify-full sslrootcert=${caFile}`), 'SELECT current_user, db FROM whereami', {
        PGPASSWORD: USERS.scram.password,
      });
      expect(r).toMatchObject({ code: 0, stdout: `${USERS.scram.name}|app1` });

      // PGBOUNCER_POOL_MODE=transaction, seen from PostgreSQL: a connected client between
      // transactions holds no server, so a second client gets the same backend.
      await withClient(pgOptions(proxy.port, 'app1', USERS.scram.name, USERS.scram.password), async (a) => {
        const first = (await a.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
        await withClient(pgOptions(proxy.port, 'app1', USERS.scram.name, USERS.scram.password), async (b) => {
          expect((await b.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid).toBe(first);
        });
        expect(await adminSql(cluster, `SELECT count(*) FROM pg_stat_activity WHERE usename = '${USERS.scram.name}' AND datname = 'app1'`)).toBe('1');
      });

      const wrong = await connectError(pgOptions(proxy.port, 'app1', USERS.scram.name, 'not-the-password'));
      expect(wrong.code).toBe('28P01');
      // No TLS: refused, as PGBOUNCER_CLIENT_TLS_SSLMODE=require says.
      const plain = await psql(conninfo(proxy.port, 'app1', USERS.scram.name, 'sslmode=disable'), 'SELECT 1', { PGPASSWORD: USERS.scram.password });
      expect(plain.code).not.toBe(0);

      expect(proxy.output()).toContain('PGBOUNCER_EXTRA_FLAGS: accepted, has no effect in pg-ingress');
      expect(proxy.output()).not.toContain(USERS.superuser.password);
    } finally {
      await proxy.stop();
    }
  });

  it("the README's several backends (PGBOUNCER_DSN_n, PGBOUNCER_USERLIST_FILE, auth_type trust) still authenticate every client", async () => {
    const { cluster, certFile, keyFile } = testEnv();
    const dir = mkdtempSync(join(tmpdir(), 'pg-ingress-bitnami-'));
    const userlist = join(dir, 'userlists.txt');
    writeFileSync(userlist, '"postgres" "password1"\n');
    const backend = `host=${cluster.host} port=${cluster.port}`;
    const proxy = await startWithEnv({
      POSTGRESQL_HOST: cluster.host,
      POSTGRESQL_PORT: String(cluster.port),
      POSTGRESQL_USERNAME: USERS.auth.name,
      POSTGRESQL_PASSWORD_FILE: writeSecret(dir, USERS.auth.password),
      POSTGRESQL_DATABASE: 'app1',
      PGBOUNCER_AUTH_TYPE: 'trust',
      PGBOUNCER_USERLIST_FILE: userlist,
      PGBOUNCER_DSN_0: `pg1=${backend} dbname=app1`,
      PGBOUNCER_DSN_1: `pg2=${backend} dbname=app2`,
      PGBOUNCER_CLIENT_TLS_CERT_FILE: certFile,
      PGBOUNCER_CLIENT_TLS_KEY_FILE: keyFile,
    });
    try {
      const r = await psql(conninfo(proxy.port, 'pg2', USERS.scram.name), 'SELECT db FROM whereami', { PGPASSWORD: USERS.scram.password });
      expect(r).toMatchObject({ code: 0, stdout: 'app2' });
      // auth_type=trust is warned about, not obeyed: a wrong password is refused.
      const wrong = await connectError(pgOptions(proxy.port, 'pg1', USERS.scram.name, 'wrong'));
      expect(wrong.code).toBe('28P01');
      expect(proxy.output()).toContain('PGBOUNCER_AUTH_TYPE: auth_type: accepted, has no effect in pg-ingress');
      // The userlist's plaintext line is not a way in.
      expect(proxy.output()).toContain('has a plaintext password there, which pg-ingress does not use');
      expect(proxy.output()).not.toContain(USERS.auth.password);
      expect(proxy.output()).not.toContain('password1');
    } finally {
      await proxy.stop();
    }
  });

  it('a setting the image has but pg-ingress refuses stops the start with a message naming the variable', async () => {
    const { cluster } = testEnv();
    const child = spawn(process.execPath, [BIN], {
      env: { PATH: process.env.PATH, POSTGRESQL_HOST: cluster.host, POSTGRESQL_USERNAME: 'app', PGBOUNCER_SET_DATABASE_USER: 'yes' },
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(code).toBe(2);
    expect(err).toMatch(/^pg-ingress: PGBOUNCER_SET_DATABASE_USER: databases\.postgres\.user: a forced server user is not supported/);
  });
});

function writeSecret(dir: string, secret: string): string {
  const path = join(dir, 'postgresql-password');
  writeFileSync(path, `${secret}\n`, { mode: 0o600 });
  return path;
}
