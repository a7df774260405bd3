// The demo's PostgreSQL: a fresh cluster in a temp dir, on 127.0.0.1 only,
// with scram-sha-256 for every TCP login, and the superuser reachable only
// over a Unix socket inside that (private) dir. initdb and postgres refuse to
// run as root, so as root they run as the `postgres` OS user, which then owns
// the dir.
import { execFile, execFileSync } from 'node:child_process';
import { appendFileSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);
const SUPERUSER = 'postgres';

export interface ThrowawayCluster {
  /** The temp dir: data, socket, log, and whatever the caller puts there; removed by stop(). */
  dir: string;
  port: number;
  /** The server's major version, as the server says it. */
  version: string;
  /** Runs SQL as the superuser in `database` (over the Unix socket). */
  sql(statements: string, database?: string): Promise<void>;
  /** pg_ctl stop -m fast, then removes the dir; never throws. */
  stop(): Promise<void>;
  /** The crash path: stop -m immediate and remove the dir, synchronously (from an exit handler). */
  stopNow(): void;
}

interface OsUser {
  name: string;
  uid: number;
  gid: number;
}

/** As root, the OS user the server programs run as; null when they can run as we are. */
function serverOsUser(): OsUser | null {
  if (process.getuid?.() !== 0) return null;
  try {
    const id = (flag: string): number => Number(execFileSync('id', [flag, SUPERUSER], { encoding: 'utf8' }).trim());
    return { name: SUPERUSER, uid: id('-u'), gid: id('-g') };
  } catch {
    throw new Error(`running as root, and initdb refuses to run as root: the demo runs PostgreSQL as the "${SUPERUSER}" OS user, which this machine does not have`);
  }
}

const confString = (s: string): string => `'${s.replaceAll("'", "''")}'`;

/** Boots the cluster on `port`; on any failure it removes what it made before rethrowing. */
export async function startThrowawayCluster(binDir: string, port: number): Promise<ThrowawayCluster> {
  const osUser = serverOsUser();
  const command = (tool: string, args: string[]): [string, string[]] =>
    osUser ? ['runuser', ['-u', osUser.name, '--', join(binDir, tool), ...args]] : [join(binDir, tool), args];
  const serverTool = async (tool: string, args: string[]): Promise<void> => {
    const [file, argv] = command(tool, args);
    try {
      await run(file, argv, { cwd: dir });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`${tool} failed: ${(e.stderr ?? '').trim() || e.message}`);
    }
  };

  const dir = mkdtempSync(join(tmpdir(), 'pg-ingress-demo-'));
  const data = join(dir, 'data');
  const log = join(dir, 'postgres.log');
  let started = false;
  const stopNow = (): void => {
    if (started) {
      const [file, argv] = command('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      try {
        execFileSync(file, argv, { cwd: dir, stdio: 'ignore', timeout: 15_000 });
      } catch {
        // Already stopped, or it will notice its data dir is gone.
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    if (osUser) chownSync(dir, osUser.uid, osUser.gid);
    await serverTool('initdb', ['-D', data, '-U', SUPERUSER, '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
    appendFileSync(
      join(data, 'postgresql.conf'),
      [
        '',
        '# pg-ingress demo',
        `port = ${port}`,
        "listen_addresses = '127.0.0.1'",
        `unix_socket_directories = ${confString(dir)}`,
        "password_encryption = 'scram-sha-256'",
        '',
      ].join('\n'),
    );
    // The superuser only over the socket in the private dir; every TCP login (pg-ingress's) with SCRAM.
    writeFileSync(join(data, 'pg_hba.conf'), [`local all ${SUPERUSER} trust`, 'host all all 127.0.0.1/32 scram-sha-256', ''].join('\n'));
    started = true;
    await serverTool('pg_ctl', ['-D', data, '-l', log, '-w', '-t', '60', 'start']).catch((err: Error) => {
      const tail = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').slice(-5).join('\n') : '';
      throw new Error(tail ? `${err.message}\n${tail}` : err.message);
    });
  } catch (err) {
    stopNow();
    throw err;
  }

  const sql = async (statements: string, database = 'postgres'): Promise<void> => {
    const client = new pg.Client({ host: dir, port, user: SUPERUSER, database });
    await client.connect();
    try {
      await client.query(statements);
    } finally {
      await client.end();
    }
  };
  const version = readFileSync(join(data, 'PG_VERSION'), 'utf8').trim();
  return {
    dir,
    port,
    version,
    sql,
    async stop() {
      const [file, argv] = command('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '30', 'stop']);
      // A server that did not stop fast (or was already gone) is left to stopNow's immediate stop.
      await run(file, argv, { cwd: dir }).then(
        () => void (started = false),
        () => undefined,
      );
      stopNow();
    },
    stopNow,
  };
}
