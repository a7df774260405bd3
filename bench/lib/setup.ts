// The benchmark's world: a throwaway PostgreSQL (the test harness) with pgbench
// tables and TLS, a CA-issued server certificate shared by every target, and
// helpers that start PgBouncer and pg-ingress as separate processes configured alike.
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { adminSql, freePort, startCluster, USERS, type ClusterInfo } from '../../test/harness/postgres.js';
import { createCa } from '../../src/tls/certificates.js';
import { defaultWorkerCount } from '../../src/workers/cpu-budget.js';
import { nodeHasReusePort, type ReusePortSetting } from '../../src/workers/reuse-port.js';
import { onCleanup } from './cleanup.js';
import { RAISE_FD_LIMIT, startDaemon, waitForPort, type Daemon } from './daemon.js';
import { openFileLimit, processTree } from './proc.js';

const run = promisify(execFile);

export const PGBOUNCER_BIN = '/usr/sbin/pgbouncer';
export const POOL_SIZE = 20;
/** Pool of the contended workload: fewer servers than clients, so waiters meet the budget. */
export const SMALL_POOL_SIZE = 2;
export const MAX_CLIENT_CONN = 10_000;
/** Database names on both proxies; direct connections use app1. */
export const DB = { tx: 'bench_tx', session: 'bench_session', small: 'bench_small', upstream: 'app1' } as const;

export interface IngressRuntime {
  /** The Node binary that runs pg-ingress (and the Node.js TLS pipe). */
  node: string;
  /** Its `process.versions.node`, e.g. 24.11.1. */
  nodeVersion: string;
  /** listen_reuse_port written into the YAML (null: this build has no such setting). */
  reusePort: ReusePortSetting | null;
  /** Whether the workers actually listen with SO_REUSEPORT (else node:cluster's primary round-robin). */
  reusePortInEffect: boolean;
  /** Pools split per worker as before the global budget (`--split-pools`), for comparison. */
  splitPools: boolean;
}

export interface World {
  cluster: ClusterInfo;
  work: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  repoRoot: string;
  /** Copy of bin/, dist/ and package.json taken at start, so a rebuild mid-run cannot mix versions. */
  ingressRoot: string;
  /** sha256 of the snapshot's dist/*.js, to tell builds apart in reports. */
  ingressBuild: string;
  /** Where the snapshot came from, and its git commit (with `+changes` when src/ differs from it). */
  ingressSource: string;
  /** pg-ingress worker processes (1 if this build has no `workers` setting). */
  workers: number;
  /** Whether this build knows the `workers` setting. */
  hasWorkersSetting: boolean;
  /** pg-ingress pool sizes as written into its YAML (per proxy, or per worker with `--split-pools`). */
  ingressPools: { tx: number; session: number; small: number };
  runtime: IngressRuntime;
  notes: string[];
}

const asRoot = process.getuid?.() === 0;

function idOf(flag: '-u' | '-g', user: string): number {
  return Number(execFileSync('id', [flag, user], { encoding: 'utf8' }).trim());
}

function giveToPostgres(path: string): void {
  if (asRoot) chownSync(path, idOf('-u', 'postgres'), idOf('-g', 'postgres'));
}

export interface WorldOptions {
  scale: number;
  workers: number | null;
  node: string;
  reusePort: ReusePortSetting;
  splitPools: boolean;
  /** A checkout with a built dist/ to run pg-ingress from (default: this repository). */
  ingressSource: string | null;
  log: (s: string) => void;
}

export async function setupWorld(opts: WorldOptions): Promise<World> {
  const repoRoot = resolve(import.meta.dirname, '../../../..'); // bench/dist/bench/lib -> repository root
  const work = mkdtempSync(join(tmpdir(), 'pg-ingress-bench-'));
  onCleanup('work dir', () => rmSync(work, { recursive: true, force: true }));
  giveToPostgres(work); // PgBouncer runs as postgres and writes its log here
  mkdirSync(join(work, 'pgbench-logs'));
  const notes: string[] = [];
  const snapshot = snapshotPgIngress(opts.ingressSource ?? repoRoot, join(work, 'pg-ingress'));
  let workers = opts.workers ?? defaultWorkerCount() // what pg-ingress's own `workers: 0` picks;
  if (!snapshot.hasWorkers && workers !== 1) {
    notes.push('This pg-ingress build has no `workers` setting: it runs as one process.');
    workers = 1;
  }
  const nodeVersion = execFileSync(opts.node, ['-p', 'process.versions.node'], { encoding: 'utf8' }).trim();
  const reusePort = snapshot.hasReusePort ? opts.reusePort : null;
  if (!snapshot.hasReusePort) notes.push('This pg-ingress build has no `listen_reuse_port` setting: its workers get their sockets from the primary (round-robin).');
  const runtime: IngressRuntime = { node: opts.node, nodeVersion, reusePort, reusePortInEffect: workers > 1 && reusePort === 'auto' && nodeHasReusePort(nodeVersion), splitPools: opts.splitPools };
  const ingressPools = poolSizes(workers, opts.splitPools);
  if (opts.splitPools && workers > 1) {
    notes.push(
      `\`--split-pools\`: the transaction pools are divided across the ${workers} workers as before the global budget (${ingressPools.tx} per worker for ${POOL_SIZE}, ${ingressPools.small} per worker for ${SMALL_POOL_SIZE}); ` +
        `the session pool is ${POOL_SIZE} per worker (a session client holds its server, so at most ${POOL_SIZE} are used, and a split strands clients on a busy worker). On a build with the global budget these sizes are per proxy, so the totals are lower.`,
    );
  } else if (workers > 1) {
    notes.push(`pg-ingress runs ${workers} worker processes; CPU and RSS are summed over primary and workers. Pool sizes are per proxy, as PgBouncer's (the primary's ledger shares one budget across workers).`);
  }

  opts.log('starting PostgreSQL (test harness)…');
  // Registered before it is up, so that Ctrl-C during initdb still waits for it and removes it.
  const starting = startCluster();
  onCleanup('postgres', async () => (await starting.catch(() => null))?.stop());
  const [cluster, ca] = await Promise.all([starting, createCa('pg-ingress bench CA')]);
  const { stop: _stop, ...info } = cluster;

  const leaf = await ca.issue(['localhost', '127.0.0.1']);
  const caFile = join(work, 'ca.pem');
  const certFile = join(work, 'server.crt');
  const keyFile = join(work, 'server.key');
  writeFileSync(caFile, ca.cert);
  writeFileSync(certFile, leaf.cert);
  writeFileSync(keyFile, leaf.key, { mode: 0o600 });
  for (const f of [caFile, certFile, keyFile]) giveToPostgres(f); // postgres insists on owning its key (0600)

  // Direct TLS: PostgreSQL serves the same certificate.
  await adminSql(info, `ALTER SYSTEM SET ssl_cert_file = '${certFile}'`);
  await adminSql(info, `ALTER SYSTEM SET ssl_key_file = '${keyFile}'`);
  await adminSql(info, 'ALTER SYSTEM SET ssl = on');
  await adminSql(info, 'SELECT pg_reload_conf()');

  opts.log(`pgbench -i -s ${opts.scale} on ${DB.upstream}…`);
  await run('pgbench', ['-i', '-q', '-s', String(opts.scale), '-h', info.socketDir, '-p', String(info.port), '-U', USERS.superuser.name, DB.upstream], { maxBuffer: 1 << 24 });
  await adminSql(info, `GRANT SELECT, INSERT, UPDATE ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO ${USERS.scram.name}`, DB.upstream);

  const world: World = { cluster: info, work, caFile, certFile, keyFile, repoRoot, ingressRoot: snapshot.root, ingressBuild: snapshot.fingerprint, ingressSource: describeSource(opts.ingressSource ?? repoRoot), workers, hasWorkersSetting: snapshot.hasWorkers, ingressPools, runtime, notes };
  const ssl = await checkLogin(world, info.port, DB.upstream, true);
  if (ssl !== null) throw new Error(`PostgreSQL did not accept a TLS login after ssl = on: ${ssl}`);
  return world;
}

/**
 * Sessions PostgreSQL has counted in app1: the difference over a proxy's cell is how many
 * server connections it opened (pool fill, and servers closed in one worker for another).
 * A backend reports its count with its other statistics, at most once a second while idle,
 * hence the wait before reading after a cell.
 */
export async function upstreamSessions(world: World, settleMs: number): Promise<number> {
  if (settleMs > 0) await new Promise((r) => setTimeout(r, settleMs));
  return Number(await adminSql(world.cluster, `SELECT sessions FROM pg_stat_database WHERE datname = '${DB.upstream}'`));
}

/** One psql login as app_scram; null if it worked, else the error text. */
export async function checkLogin(world: World, port: number, db: string, tls: boolean): Promise<string | null> {
  try {
    await run('psql', ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', USERS.scram.name, '-d', db, '-c', 'SELECT count(*) FROM pgbench_branches'], {
      env: clientEnv(world, tls),
      timeout: 30_000,
    });
    return null;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    return (e.stderr || e.message).trim();
  }
}

/** libpq environment for app_scram: password, TLS mode, nothing inherited that could redirect it. */
export function clientEnv(world: World, tls: boolean): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: world.work, // no ~/.pgpass, ~/.postgresql/*
    PGPASSWORD: USERS.scram.password,
    PGSSLMODE: tls ? 'require' : 'disable',
    PGSSLROOTCERT: world.caFile,
    PGGSSENCMODE: 'disable',
    PGCONNECT_TIMEOUT: '60',
  };
}

function upstreamDsn(world: World, poolMode: 'transaction' | 'session', poolSize = POOL_SIZE): string {
  return `host=127.0.0.1 port=${world.cluster.port} dbname=${DB.upstream} pool_mode=${poolMode} pool_size=${poolSize}`;
}

/** `DIR (commit abc1234[+changes])`: a dist/ built from uncommitted src/ is not that commit. */
function describeSource(dir: string): string {
  try {
    const commit = execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['-C', dir, 'status', '--porcelain', '--', 'src'], { encoding: 'utf8' }).trim() !== '';
    return `${dir} (commit ${commit}${dirty ? '+changes in src/' : ''})`;
  } catch {
    return dir;
  }
}

/** pg-ingress pool sizes: PgBouncer's, or (`--split-pools`) the old per-worker split of the transaction pools. */
function poolSizes(workers: number, split: boolean): World['ingressPools'] {
  if (!split) return { tx: POOL_SIZE, session: POOL_SIZE, small: SMALL_POOL_SIZE };
  const share = (total: number): number => Math.max(1, Math.round(total / workers));
  return { tx: share(POOL_SIZE), session: POOL_SIZE, small: share(SMALL_POOL_SIZE) };
}

/** Copies the built proxy (bin/, dist/, package.json; node_modules linked) aside. */
function snapshotPgIngress(repoRoot: string, root: string): { root: string; fingerprint: string; hasWorkers: boolean; hasReusePort: boolean } {
  if (!existsSync(join(repoRoot, 'dist/cli/main.js'))) throw new Error('dist/ is missing: run `npm run build` (npm run bench does)');
  mkdirSync(root);
  for (const part of ['bin', 'dist', 'package.json']) cpSync(join(repoRoot, part), join(root, part), { recursive: true });
  symlinkSync(join(repoRoot, 'node_modules'), join(root, 'node_modules'));
  const hash = createHash('sha256');
  const files = (readdirSync(join(root, 'dist'), { recursive: true }) as string[]).filter((f) => f.endsWith('.js')).sort();
  for (const f of files) hash.update(f).update(readFileSync(join(root, 'dist', f)));
  const schema = join(root, 'dist/config/schema.js');
  const schemaText = existsSync(schema) ? readFileSync(schema, 'utf8') : '';
  return { root, fingerprint: hash.digest('hex').slice(0, 12), hasWorkers: /\bworkers\b/.test(schemaText), hasReusePort: /\blisten_reuse_port\b/.test(schemaText) };
}

export interface ProxyProcess {
  daemon: Daemon;
  port: number;
  stop(): Promise<void>;
}

export function havePgbouncer(): boolean {
  return existsSync(PGBOUNCER_BIN);
}

/** PgBouncer as the postgres OS user (it refuses root), TLS and auth_query as pg-ingress. */
export async function startPgbouncer(world: World, name: string): Promise<ProxyProcess> {
  const port = await freePort();
  const dir = world.work;
  const userlist = join(dir, 'userlist.txt');
  writeFileSync(userlist, `"${USERS.auth.name}" "${USERS.auth.password}"\n`, { mode: 0o600 });
  giveToPostgres(userlist);
  const ini = join(dir, `${name}.ini`);
  writeFileSync(
    ini,
    [
      '[databases]',
      `${DB.tx} = ${upstreamDsn(world, 'transaction')}`,
      `${DB.session} = ${upstreamDsn(world, 'session')}`,
      `${DB.small} = ${upstreamDsn(world, 'transaction', SMALL_POOL_SIZE)}`,
      '',
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      `logfile = ${join(dir, `${name}.log`)}`,
      'auth_type = scram-sha-256',
      `auth_file = ${userlist}`,
      `auth_user = ${USERS.auth.name}`,
      'auth_query = SELECT username, password FROM pgbouncer.get_auth($1)',
      'client_tls_sslmode = require',
      `client_tls_cert_file = ${world.certFile}`,
      `client_tls_key_file = ${world.keyFile}`,
      'server_tls_sslmode = disable',
      `default_pool_size = ${POOL_SIZE}`,
      `max_client_conn = ${MAX_CLIENT_CONN}`,
      'server_reset_query = DISCARD ALL',
      'ignore_startup_parameters = extra_float_digits',
      'listen_backlog = 511',
      'log_connections = 0',
      'log_disconnections = 0',
      '',
    ].join('\n'),
  );
  giveToPostgres(ini);
  const command = asRoot ? 'runuser' : 'sh';
  const args = asRoot ? ['-u', 'postgres', '--', 'sh', '-c', RAISE_FD_LIMIT, 'sh', PGBOUNCER_BIN, ini] : ['-c', RAISE_FD_LIMIT, 'sh', PGBOUNCER_BIN, ini];
  const daemon = startDaemon(name, command, args, join(dir, `${name}.out`), { env: { PATH: process.env.PATH }, cwd: '/', stopChildrenFirst: true });
  await waitForPort(port, daemon);
  return { daemon, port, stop: () => daemon.stop() };
}

/** pg-ingress through its CLI with a generated YAML config. */
export async function startPgIngress(world: World, name: string): Promise<ProxyProcess> {
  const port = await freePort();
  const yaml = join(world.work, `${name}.yaml`);
  const q = (s: string): string => JSON.stringify(s);
  writeFileSync(
    yaml,
    [
      'listen_addr: 127.0.0.1',
      `listen_port: ${port}`,
      'client_tls_sslmode: require',
      `client_tls_cert_file: ${q(world.certFile)}`,
      `client_tls_key_file: ${q(world.keyFile)}`,
      `auth_user: ${USERS.auth.name}`,
      `auth_password: ${q(USERS.auth.password)}`,
      'auth_query: "SELECT username, password FROM pgbouncer.get_auth($1)"',
      `default_pool_size: ${world.ingressPools.tx}`,
      `max_client_conn: ${MAX_CLIENT_CONN}`,
      'server_reset_query: DISCARD ALL',
      'log_level: warn',
      'metrics_port: 0', // on, as by default, but on a free port: two bench runs never collide
      ...(world.hasWorkersSetting ? [`workers: ${world.workers}`] : []),
      ...(world.runtime.reusePort !== null ? [`listen_reuse_port: ${world.runtime.reusePort}`] : []),
      'databases:',
      `  ${DB.tx}: ${q(upstreamDsn(world, 'transaction', world.ingressPools.tx))}`,
      `  ${DB.session}: ${q(upstreamDsn(world, 'session', world.ingressPools.session))}`,
      `  ${DB.small}: ${q(upstreamDsn(world, 'transaction', world.ingressPools.small))}`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const bin = join(world.ingressRoot, 'bin/pg-ingress.js');
  const daemon = startDaemon(name, 'sh', ['-c', RAISE_FD_LIMIT, 'sh', world.runtime.node, bin, '--config', yaml], join(world.work, `${name}.out`), { env: { PATH: process.env.PATH, ...(process.env.BENCH_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_NODE_OPTIONS } : {}) }, cwd: world.ingressRoot });
  await waitForPort(port, daemon);
  return { daemon, port, stop: () => daemon.stop() };
}

/** The Node.js TLS pipe (bench/node-pipe.ts): the platform floor, with pg-ingress's Node binary and worker count. */
export async function startNodePipe(world: World, name: string): Promise<ProxyProcess> {
  const port = await freePort();
  const script = join(world.repoRoot, 'bench/dist/bench/node-pipe.js');
  const input = { port, upstreamHost: '127.0.0.1', upstreamPort: world.cluster.port, certFile: world.certFile, keyFile: world.keyFile, workers: world.workers };
  const daemon = startDaemon(name, 'sh', ['-c', RAISE_FD_LIMIT, 'sh', world.runtime.node, script], join(world.work, `${name}.out`), { env: { PATH: process.env.PATH, NODE_PIPE: JSON.stringify(input) }, cwd: world.repoRoot });
  await waitForPort(port, daemon);
  return { daemon, port, stop: () => daemon.stop() };
}

/** Warns when a proxy could not get enough file descriptors for `clients`. */
export function fdWarning(proxy: ProxyProcess, clients: number): string | null {
  // PgBouncer sits under runuser: look at the process that actually listens (the deepest one).
  const tree = processTree(proxy.daemon.pid);
  const limit = openFileLimit(tree[tree.length - 1]!);
  return limit !== null && limit < clients + 100 ? `${proxy.daemon.name}: open file limit ${limit} is below ${clients + 100}` : null;
}
