// A throwaway PostgreSQL cluster for tests and benchmarks: initdb in a temp
// dir on a free port, scram-sha-256 in pg_hba.conf, the auth_query setup from
// `pg-ingress init-sql`, and a few users and databases. initdb and postgres
// refuse to run as root, so as root they run as the `postgres` OS user.
import { execFile, execFileSync } from 'node:child_process';
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { initSql } from '../../src/cli/init-sql.js';

const run = promisify(execFile);

export const USERS = {
  superuser: { name: 'postgres', password: 'super-secret-pw' },
  auth: { name: 'pgbouncer', password: 'auth-secret-pw' },
  scram: { name: 'app_scram', password: 'scram-secret-pw' },
  md5: { name: 'app_md5', password: 'md5-secret-pw' },
  trust: { name: 'app_trust', password: 'trust-secret-pw' },
  admin: { name: 'admin_super', password: 'admin-secret-pw' },
} as const;

export const DATABASES = ['app1', 'app2'] as const;

export interface ClusterInfo {
  host: string;
  port: number;
  dir: string;
  socketDir: string;
  binDir: string;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Where initdb, pg_ctl and postgres live: next to `initdb` on PATH, else the newest Debian install. */
export function postgresBinDir(): string {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const initdb = join(dir, 'initdb');
    if (dir && existsSync(initdb)) return dirname(realpathSync(initdb));
  }
  const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) if (existsSync(`/usr/lib/postgresql/${v}/bin/initdb`)) return `/usr/lib/postgresql/${v}/bin`;
  throw new Error('PostgreSQL server binaries (initdb) not found: install postgresql (Debian: apt-get install postgresql)');
}

const asRoot = process.getuid?.() === 0;

/** Runs a server binary, as the postgres OS user when we are root. */
function pgCommand(binDir: string, tool: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  const bin = join(binDir, tool);
  return asRoot ? run('runuser', ['-u', 'postgres', '--', bin, ...args], { cwd: '/' }) : run(bin, args);
}

export interface ClusterOptions {
  /** Certificate and key for ssl = on (clients that do not ask for TLS are unaffected). */
  tls?: { cert: string; key: string };
}

export async function startCluster(options: ClusterOptions = {}): Promise<ClusterInfo & { stop(): Promise<void> }> {
  const binDir = postgresBinDir();
  const dir = mkdtempSync(join(tmpdir(), 'pg-ingress-pg-'));
  const data = join(dir, 'data');
  const port = await freePort();
  if (asRoot) chownSync(dir, uidOf('postgres'), gidOf('postgres'));
  const pwfile = join(dir, 'pwfile');
  writeFileSync(pwfile, `${USERS.superuser.password}\n`);
  if (asRoot) chownSync(pwfile, uidOf('postgres'), gidOf('postgres'));

  await pgCommand(binDir, 'initdb', ['-D', data, '-U', USERS.superuser.name, `--pwfile=${pwfile}`, '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--locale=C']);
  const ssl: string[] = [];
  if (options.tls) {
    // PostgreSQL wants its key owned by the user it runs as, and private.
    for (const [name, pem] of [['pg-server.pem', options.tls.cert], ['pg-server.key', options.tls.key]] as const) {
      writeFileSync(join(dir, name), pem, { mode: 0o600 });
      if (asRoot) chownSync(join(dir, name), uidOf('postgres'), gidOf('postgres'));
    }
    ssl.push('ssl = on', `ssl_cert_file = '${join(dir, 'pg-server.pem')}'`, `ssl_key_file = '${join(dir, 'pg-server.key')}'`);
  }
  appendFileSync(
    join(data, 'postgresql.conf'),
    [
      `port = ${port}`,
      // 127.0.0.2 too: a second address of the same server (host lists, a certificate that does not name it).
      `listen_addresses = '127.0.0.1,127.0.0.2'`,
      `unix_socket_directories = '${dir}'`,
      'max_connections = 300',
      'fsync = off',
      'synchronous_commit = off',
      'full_page_writes = off',
      'shared_buffers = 64MB',
      "password_encryption = 'scram-sha-256'",
      ...ssl,
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(data, 'pg_hba.conf'),
    [
      'local all all trust',
      ...['127.0.0.1/32', '127.0.0.2/32'].flatMap((net) => [
        `host all ${USERS.md5.name} ${net} md5`,
        `host all ${USERS.trust.name} ${net} trust`,
        `host all all ${net} scram-sha-256`,
      ]),
      '',
    ].join('\n'),
  );
  await pgCommand(binDir, 'pg_ctl', ['-D', data, '-l', join(dir, 'postgres.log'), '-w', '-t', '60', 'start']);

  const info: ClusterInfo = { host: '127.0.0.1', port, dir, socketDir: dir, binDir };
  await setupRolesAndDatabases(info);
  return {
    ...info,
    async stop() {
      await pgCommand(binDir, 'pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** psql as the superuser over the Unix socket (trusted locally). */
export async function adminSql(info: ClusterInfo, sql: string, database = 'postgres'): Promise<string> {
  const { stdout } = await run('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', info.socketDir, '-p', String(info.port), '-U', USERS.superuser.name, '-d', database, '-c', sql]);
  return stdout.trim();
}

async function setupRolesAndDatabases(info: ClusterInfo): Promise<void> {
  const q = (s: string): string => `'${s.replaceAll("'", "''")}'`;
  await adminSql(
    info,
    [
      `CREATE ROLE ${USERS.scram.name} LOGIN PASSWORD ${q(USERS.scram.password)}`,
      `CREATE ROLE ${USERS.trust.name} LOGIN PASSWORD ${q(USERS.trust.password)}`,
      `CREATE ROLE ${USERS.admin.name} LOGIN SUPERUSER PASSWORD ${q(USERS.admin.password)}`,
      `SET password_encryption = 'md5'`,
      `CREATE ROLE ${USERS.md5.name} LOGIN PASSWORD ${q(USERS.md5.password)}`,
    ].join(';'),
  );
  for (const db of DATABASES) await adminSql(info, `CREATE DATABASE ${db}`);
  for (const db of ['postgres', ...DATABASES]) {
    await adminSql(info, initSql({ authUser: USERS.auth.name, authRole: 'pgbouncer_auth' }), db);
    await adminSql(info, `CREATE TABLE whereami AS SELECT ${q(db)}::text AS db; GRANT SELECT ON whereami TO PUBLIC`, db);
  }
  await adminSql(info, `ALTER ROLE ${USERS.auth.name} PASSWORD ${q(USERS.auth.password)}`);
}

function uidOf(user: string): number {
  return Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
}

function gidOf(user: string): number {
  return Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim());
}
