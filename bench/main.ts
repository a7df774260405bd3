// pg-ingress benchmark suite: pgbench workloads against PostgreSQL (plaintext and
// TLS), PgBouncer and pg-ingress, interleaved in one run; proxy CPU per
// transaction; idle memory per TLS client; a framer microbenchmark. Writes a
// Markdown report to bench/results/. See bench/README.md.
//
//   npm run bench                      full run (several minutes)
//   npm run bench -- --smoke           a few seconds per workload (CI)
//   npm run bench -- --only framer     options: --duration S --rounds N --scale N
//                                       --only id,id,memory,framer --idle 1000,5000 --big-clients N
//                                       --workers N (pg-ingress processes; default one per CPU) --desc TEXT
//                                       --node PATH (Node binary for pg-ingress; default this one)
//                                       --reuse-port auto|off (pg-ingress listen_reuse_port; default auto)
//                                       --split-pools (divide transaction pools per worker, as before the global budget)
//                                       --ingress-root DIR (a checkout with a built dist/ to run pg-ingress from)
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { checkInterrupted, cleanupAll, installSignalHandlers } from './lib/cleanup.js';
import { runFramerBench, type FramerResult } from './lib/framer-bench.js';
import { measureIdle, type IdleResult } from './lib/memory.js';
import { runPgbench, type CellResult } from './lib/pgbench.js';
import { cellKey, renderReport, targetChecks, type ReportInput } from './lib/report.js';
import { checkLogin, clientEnv, upstreamSessions, DB, fdWarning, havePgbouncer, PGBOUNCER_BIN, POOL_SIZE, setupWorld, SMALL_POOL_SIZE, startPgbouncer, startNodePipe, startPgIngress, type ProxyProcess, type World } from './lib/setup.js';
import { fmt, summarize, type CellSummary } from './lib/stats.js';
import { workloads, type Target, type TargetId, type Workload } from './lib/workloads.js';

const { values: opt } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    duration: { type: 'string' },
    rounds: { type: 'string' },
    scale: { type: 'string' },
    only: { type: 'string' },
    idle: { type: 'string' },
    'big-clients': { type: 'string' },
    workers: { type: 'string' },
    node: { type: 'string' },
    'reuse-port': { type: 'string' },
    'split-pools': { type: 'boolean', default: false },
    'ingress-root': { type: 'string' },
    desc: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (opt.help) {
  console.log(readFileSync(new URL(import.meta.url), 'utf8').split('\n').filter((l) => l.startsWith('//   ') || l.startsWith('//    ')).map((l) => l.slice(3)).join('\n'));
  process.exit(0);
}

const smoke = opt.smoke;
const usageError = (msg: string): never => {
  console.error(`bench: ${msg} (--help for usage)`);
  process.exit(2);
};
const intOpt = (v: string | undefined, def: number, name: string): number => {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) usageError(`--${name}: expected a positive integer, got ${v}`);
  return n;
};
const config = {
  duration: intOpt(opt.duration, smoke ? 1 : 10, 'duration'),
  rounds: intOpt(opt.rounds, smoke ? 1 : 3, 'rounds'),
  scale: intOpt(opt.scale, smoke ? 1 : 10, 'scale'),
  bigClients: intOpt(opt['big-clients'], smoke ? 200 : 1000, 'big-clients'),
  idle: opt.idle ? opt.idle.split(',').map((s) => intOpt(s, 0, 'idle')) : smoke ? [100] : [1000, 5000],
  workers: opt.workers === undefined ? null : intOpt(opt.workers, 1, 'workers'),
  node: opt.node ?? process.execPath,
  reusePort: reusePortOpt(opt['reuse-port']),
  splitPools: opt['split-pools'],
  ingressSource: opt['ingress-root'] ?? null,
  framerSeconds: smoke ? 0.2 : 1,
  settleMs: smoke ? 300 : 2000,
  threads: 2,
};
function reusePortOpt(v: string | undefined): 'auto' | 'off' {
  if (v === undefined || v === 'auto' || v === 'off') return v ?? 'auto';
  return usageError(`--reuse-port: expected auto or off, got ${v}`);
}
if (!existsSync(config.node)) usageError(`--node: ${config.node} does not exist`);
if (config.ingressSource !== null && !existsSync(join(config.ingressSource, 'dist/cli/main.js'))) usageError(`--ingress-root: ${config.ingressSource}/dist/cli/main.js is missing (npm ci && npm run build there)`);
const ALL_WORKLOADS = workloads(config.bigClients).map((w) => w.id);
const only = opt.only ? new Set(opt.only.split(',')) : null;
for (const id of only ?? []) if (!ALL_WORKLOADS.includes(id) && id !== 'memory' && id !== 'framer') usageError(`--only: unknown "${id}"; known: ${[...ALL_WORKLOADS, 'memory', 'framer'].join(', ')}`);
const wanted = (id: string): boolean => only === null || only.has(id);

const log = (s: string): void => void process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
const notes: string[] = [];
const raw: string[] = [];
const problems: string[] = [];
const loadAtStart = os.loadavg()[0]!;

async function main(): Promise<number> {
  installSignalHandlers();
  const started = Date.now();
  const repoRoot = new URL('../../..', import.meta.url).pathname;
  if (!existsSync(join(repoRoot, 'dist/cli/main.js'))) throw new Error('dist/ is missing: run `npm run build` (npm run bench does)');

  let framer: FramerResult[] | null = null;
  if (wanted('framer')) {
    log('framer microbenchmark…');
    framer = runFramerBench(config.framerSeconds);
    for (const f of framer) log(`  ${f.name}: ${f.mbPerSec.toFixed(0)} MB/s, ${f.nsPerMessage.toFixed(1)} ns/message`);
  }

  const selected = workloads(config.bigClients).filter((w) => wanted(w.id));
  const cells = new Map<string, CellSummary>();
  const idle = new Map<string, IdleResult>();
  const targetLabels: { id: TargetId; label: string }[] = [
    { id: 'direct', label: 'PostgreSQL direct, plaintext' },
    { id: 'direct-tls', label: 'PostgreSQL direct, TLS' },
    { id: 'pgbouncer', label: 'PgBouncer' },
    { id: 'pg-ingress', label: 'pg-ingress' },
    { id: 'node-pipe', label: 'Node.js TLS pipe (floor: no pooling, no parsing)' },
  ];
  let world: World | null = null;
  let bigClients = config.bigClients;

  if (selected.length > 0 || wanted('memory')) {
    world = await setupWorld({ scale: config.scale, workers: config.workers, node: config.node, reusePort: config.reusePort, splitPools: config.splitPools, ingressSource: config.ingressSource, log });
    notes.push(...world.notes);
    checkInterrupted();
    const pgbouncerOk = havePgbouncer();
    if (!pgbouncerOk) {
      const msg = `PgBouncer not found at ${PGBOUNCER_BIN} (apt-get install -y pgbouncer): PgBouncer targets skipped`;
      log(msg);
      notes.push(msg);
    }

    if (selected.length > 0) {
      const targets = await startTargets(world, pgbouncerOk);
      // Largest client count pgbench can run here (full runs only; the smoke run uses a small one).
      const big = selected.find((w) => w.id === 'select-tx-big');
      if (big && !smoke) {
        bigClients = await probeBigClients(world, targets, config.bigClients);
        big.clients = bigClients;
        big.title = big.title.replace(String(config.bigClients), String(bigClients));
      }
      const results = await runRounds(world, selected, targets);
      for (const [key, list] of results) cells.set(key, summarize(list));
      for (const t of targets) if (t.proxy) await t.proxy.stop();
      for (const w of selected) {
        for (const t of targets) {
          const c = cells.get(cellKey(w.id, t.id));
          if (!c) continue;
          const expected = w.errorsExpectedFor?.includes(t.id) ?? false;
          const bad = c.failedRounds > 0 || c.abortedClients > 0 || c.failedTransactions > 0 || c.tps === null;
          if (bad && !expected) problems.push(`${w.id} / ${t.id}: ${c.error ?? 'no transactions'}`);
          if (bad && expected) notes.push(`${w.id} / ${t.label}: errors are expected here (${t.id === 'pgbouncer' ? 'PgBouncer 1.18 does not track prepared statements in transaction mode: named statements of one client meet servers where they are missing or already exist, and pgbench aborts the client at the first such error' : 'see table'}): ${c.abortedClients} clients aborted over ${c.rounds} runs; first error: ${c.error ?? '—'}`);
        }
      }
    }

    if (wanted('memory')) {
      for (const n of config.idle) {
        for (const kind of ['pgbouncer', 'pg-ingress'] as const) {
          if (kind === 'pgbouncer' && !pgbouncerOk) continue;
          checkInterrupted();
          log(`idle memory: ${kind}, ${n} TLS clients…`);
          const proxy = kind === 'pgbouncer' ? await startPgbouncer(world, `pgbouncer-idle-${n}`) : await startPgIngress(world, `pg-ingress-idle-${n}`);
          try {
            const r = await measureIdle(world, proxy, n, { settleMs: config.settleMs, samples: smoke ? 1 : 5 });
            idle.set(`${kind}|${n}`, r);
            log(`  ${r.connected}/${n} connected, RSS ${(r.rssBefore / 1048576).toFixed(1)} → ${(r.rssAfter / 1048576).toFixed(1)} MiB, ${r.bytesPerClient === null ? '—' : Math.round(r.bytesPerClient)} B/client${r.error ? ` (${r.error})` : ''}`);
            if (r.error) problems.push(`idle memory ${kind} ${n}: ${r.error}`);
            if (proxy.daemon.exit) problems.push(`idle memory ${kind} ${n}: proxy exited: ${proxy.daemon.logTail(5)}`);
          } finally {
            await proxy.stop();
          }
        }
      }
    }
  }

  const machine = machineInfo(world);
  const input: ReportInput = {
    title: `pg-ingress benchmark, ${new Date().toISOString().slice(0, 10)}${smoke ? ' (smoke run: numbers are not meaningful)' : ''}`,
    machine,
    settings: [
      ['rounds', String(config.rounds)],
      ['seconds per cell', smoke ? 'smoke: `-t` with a few transactions per client' : `${config.duration} (+ the clients' login time for 100+ clients: pgbench's -T clock includes it, its tps does not)`],
      ['pgbench scale', String(config.scale)],
      ['pgbench threads', `-j ${config.threads}`],
      ['pool size', poolSizeSetting(world)],
      ['client TLS', 'sslmode=require (except direct plaintext), user app_scram (SCRAM-SHA-256), auth via auth_query'],
      ['wall time', `${Math.round((Date.now() - started) / 1000)} s`],
    ],
    workloads: selected,
    targets: targetLabels,
    cells,
    idle,
    idleCounts: config.idle,
    framer,
    notes: [
      ...notes,
      'Direct PostgreSQL is not run with the big client count: the throwaway cluster has max_connections = 300.',
      'Direct PostgreSQL rows of the session and transaction `-S` 10-client workloads measure the same thing (no pooling); both are kept as extra samples of the baseline.',
      'Proxies, PostgreSQL and pgbench share the machine; on few cores the proxy competes with pgbench and the server for CPU, which caps every target.',
      'The Node.js TLS pipe (bench/node-pipe.ts) is the floor for any proxy on this runtime: SSLRequest, TLS termination with the same settings and worker count as pg-ingress, then pipe() to a PostgreSQL connection of its own per client (the client authenticates to PostgreSQL through it). It pools nothing and parses nothing, so it runs only where a server per client is fair (10 and 20 clients), and its CPU per transaction is what Node\'s socket and TLS path cost before any proxy logic.',
      ...problems.map((p) => `PROBLEM: ${p}`),
    ],
    raw,
  };
  const report = renderReport(input);
  process.stdout.write(`\n${report}\n`);
  if (world !== null) writeResults(repoRoot, report); // a framer-only run is for quick iteration: printed only
  for (const c of targetChecks(input)) log(`${c.verdict.padEnd(4)} ${c.goal}: ${c.measured}`);
  if (problems.length > 0) log(`${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
  return smoke && problems.length > 0 ? 1 : 0;
}

async function startTargets(world: World, withPgbouncer: boolean): Promise<Target[]> {
  const upstream = (): string => DB.upstream;
  const alias = (w: Workload): string => ({ tx: DB.tx, session: DB.session, 'tx-small': DB.small })[w.pool];
  const targets: Target[] = [
    { id: 'direct', label: 'PostgreSQL direct, plaintext', tls: false, port: world.cluster.port, database: upstream, proxy: null, restart: null },
    { id: 'direct-tls', label: 'PostgreSQL direct, TLS', tls: true, port: world.cluster.port, database: upstream, proxy: null, restart: null },
  ];
  if (withPgbouncer) {
    log('starting PgBouncer…');
    const restart = (): Promise<ProxyProcess> => startPgbouncer(world, 'pgbouncer');
    const proxy = await restart();
    targets.push({ id: 'pgbouncer', label: 'PgBouncer', tls: true, port: proxy.port, database: alias, proxy, restart });
  }
  log('starting pg-ingress (CLI, separate process)…');
  const restart = (): Promise<ProxyProcess> => startPgIngress(world, 'pg-ingress');
  const proxy = await restart();
  targets.push({ id: 'pg-ingress', label: 'pg-ingress', tls: true, port: proxy.port, database: alias, proxy, restart });
  log('starting the Node.js TLS pipe (platform floor)…');
  const restartPipe = (): Promise<ProxyProcess> => startNodePipe(world, 'node-pipe');
  const pipe = await restartPipe();
  targets.push({ id: 'node-pipe', label: 'Node.js TLS pipe (floor: no pooling, no parsing)', tls: true, port: pipe.port, database: upstream, proxy: pipe, restart: restartPipe });

  const usable: Target[] = [];
  for (const t of targets) {
    const dbs = t.database === upstream ? [DB.upstream] : [DB.tx, DB.session, DB.small];
    let error: string | null = null;
    for (const db of dbs) error ??= await checkLogin(world, t.port, db, t.tls);
    if (error !== null) {
      const msg = `${t.label}: a test login failed, target skipped: ${error.split('\n')[0]}`;
      log(msg);
      problems.push(msg);
      if (t.proxy) await t.proxy.stop();
      continue;
    }
    if (t.proxy) {
      const w = fdWarning(t.proxy, config.bigClients);
      if (w) notes.push(w);
    }
    usable.push(t);
  }
  return usable;
}

async function probeBigClients(world: World, targets: Target[], wantClients: number): Promise<number> {
  const probe = targets.find((t) => t.id === 'pgbouncer') ?? targets.find((t) => t.id === 'pg-ingress');
  if (!probe) return wantClients;
  for (const n of [wantClients, 500, 250, 100].filter((n, i, a) => n <= wantClients && a.indexOf(n) === i)) {
    log(`probing pgbench with ${n} clients against ${probe.label}…`);
    checkInterrupted();
    const r = await runPgbench({ port: probe.port, db: DB.tx, env: clientEnv(world, true), clients: n, threads: config.threads, seconds: 2 + Math.ceil(n * 0.015), args: ['-S'], logPrefix: join(world.work, 'pgbench-logs', 'probe'), proxyPid: null });
    if (r.exitCode === 0 && r.transactions > 0 && r.abortedClients === 0) {
      if (n !== wantClients) notes.push(`pgbench could not run ${wantClients} clients here; the big-client workload uses ${n}.`);
      return n;
    }
    const msg = `pgbench with ${n} clients against ${probe.label} failed: ${r.error ?? `exit ${r.exitCode}`}`;
    log(msg);
    notes.push(msg);
  }
  notes.push('pgbench could not run even 100 clients; the big-client workload uses 100 anyway.');
  return 100;
}

async function runRounds(world: World, selected: Workload[], targets: Target[]): Promise<Map<string, CellResult[]>> {
  const results = new Map<string, CellResult[]>();
  // pgbench's -T clock starts before its clients log in (TLS + SCRAM, a few ms each), so
  // many-client cells get that time on top; learnt from pgbench's "initial connection time".
  const loginAllowance = new Map<string, number>(selected.map((w) => [w.id, w.clients >= 50 ? w.clients * 0.012 : 0]));
  let seq = 0;
  for (let round = 0; round < config.rounds; round++) {
    for (const w of selected) {
      // Rotate the order each round so no target always runs first (warm caches) or last.
      // Smoke runs prove the direct targets on two workloads only, to stay short.
      const direct = w.direct && (!smoke || w.id === 'select-tx-10' || w.id === 'prepared-tx-10');
      const pipe = w.pipe && (!smoke || w.id === 'select-tx-10');
      const order = targets.filter((t) => (t.id === 'node-pipe' ? pipe : t.proxy !== null || direct));
      const rotated = order.map((_, i) => order[(i + round) % order.length]!);
      for (const t of rotated) {
        checkInterrupted();
        if (t.proxy?.daemon.exit && t.restart) {
          const exit = t.proxy.daemon.exit;
          const msg = `${t.label} exited (code ${exit.code}, signal ${exit.signal}) before ${w.id} round ${round + 1}; restarted. Log tail: ${t.proxy.daemon.logTail(3).replaceAll('\n', ' / ')}`;
          log(msg);
          problems.push(msg);
          t.proxy = await t.restart();
          t.port = t.proxy.port;
        }
        const sessionsBefore = t.proxy && t.id !== 'node-pipe' ? await upstreamSessions(world, 0) : null;
        const r = await runPgbench({
          port: t.port,
          db: t.database(w),
          env: clientEnv(world, t.tls),
          clients: w.clients,
          threads: config.threads,
          seconds: smoke ? null : config.duration + Math.ceil(loginAllowance.get(w.id)!),
          transactionsPerClient: w.smokeTx,
          args: w.args,
          logPrefix: join(world.work, 'pgbench-logs', `cell${seq++}`),
          proxyPid: t.proxy?.daemon.pid ?? null,
        });
        if (sessionsBefore !== null) r.serverLogins = (await upstreamSessions(world, smoke ? 0 : 1200)) - sessionsBefore; // smoke: counts are not read
        if (r.connectMs !== null) loginAllowance.set(w.id, Math.max(loginAllowance.get(w.id)!, (r.connectMs / 1000) * 1.3));
        const key = cellKey(w.id, t.id);
        results.set(key, [...(results.get(key) ?? []), r]);
        const line = `round ${round + 1}/${config.rounds} ${w.id.padEnd(18)} ${t.id.padEnd(10)} tps ${fmt(r.tps, 0).padStart(7)}  avg ${fmt(r.avgMs, 3)} ms  p99 ${fmt(r.p99Ms, 3)} ms  cpu/1000tx ${fmt(r.cpuPer1000, 4)}${r.serverLogins !== null ? `  server logins ${r.serverLogins}` : ''}${r.connectMs !== null && r.connectMs > 500 ? `  logins ${(r.connectMs / 1000).toFixed(1)} s` : ''}${r.abortedClients ? `  aborted ${r.abortedClients}` : ''}${r.exitCode !== 0 ? `  exit ${r.exitCode}: ${r.error ?? ''}` : ''}`;
        log(line);
        raw.push(line);
      }
    }
  }
  return results;
}

function machineInfo(world: World | null): [string, string][] {
  const cmd = (c: string, args: string[]): string => {
    try {
      return execFileSync(c, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split('\n')[0]!;
    } catch {
      return 'not available';
    }
  };
  const cpu = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
  return [
    ['date', new Date().toISOString()],
    ['nproc', `${os.availableParallelism()}`],
    ['CPU', cpu],
    ['memory', `${Math.round(os.totalmem() / 2 ** 30)} GiB`],
    ['kernel', `${os.type()} ${os.release()}`],
    ['Node.js (bench, pgbench driver)', process.version],
    ['PostgreSQL', world ? cmd(join(world.cluster.binDir, 'postgres'), ['--version']) : 'not started'],
    ['PgBouncer', havePgbouncer() ? cmd(PGBOUNCER_BIN, ['--version']) : 'not installed'],
    ['pgbench', cmd('pgbench', ['--version'])],
    ['pg-ingress build', world ? `dist/ sha256 ${world.ingressBuild} (snapshot taken at start) from ${world.ingressSource}` : '—'],
    ['pg-ingress run', world ? ingressRunInfo(world) : '—'],
    ['load average (1 min), start → end', `${loadAtStart.toFixed(2)} → ${os.loadavg()[0]!.toFixed(2)} (anything else running on the machine skews all targets alike only on average)`],
  ];
}

/** Node version, workers and how they accept connections: what a reader needs to compare runs. */
function ingressRunInfo(world: World): string {
  const r = world.runtime;
  const accept = world.workers === 1 ? 'one process, accepting its own connections' : r.reusePortInEffect ? 'workers listen with SO_REUSEPORT' : "node:cluster's primary round-robin";
  const setting = r.reusePort === null ? 'no listen_reuse_port setting in this build' : `listen_reuse_port: ${r.reusePort}`;
  return `Node.js v${r.nodeVersion} (${r.node}), workers: ${world.workers}, ${setting} → ${accept}${r.splitPools ? ', --split-pools' : ''}`;
}

function poolSizeSetting(world: World | null): string {
  if (world === null) return '—';
  const p = world.ingressPools;
  const base = `${POOL_SIZE} per database alias, bench_small ${SMALL_POOL_SIZE} (PgBouncer)`;
  if (world.runtime.splitPools && world.workers > 1) return `${base}; pg-ingress per worker (--split-pools): ${world.workers} × ${p.tx} (transaction), × ${p.small} (bench_small), × ${p.session} (session)`;
  return `${base}; pg-ingress the same, per proxy (one budget across its ${world.workers} worker${world.workers > 1 ? 's' : ''})`;
}

function writeResults(repoRoot: string, report: string): void {
  const dir = join(repoRoot, 'bench/results');
  mkdirSync(dir, { recursive: true });
  if (smoke) {
    writeFileSync(join(dir, 'smoke.md'), report);
    log('wrote bench/results/smoke.md');
    return;
  }
  const date = new Date().toISOString().slice(0, 10);
  const desc = (opt.desc ?? `${only ? [...only].join('+') : 'full'}-${config.rounds}x${config.duration}s`).replace(/[^A-Za-z0-9_.+-]+/g, '-');
  let name = `${date}-${desc}.md`;
  for (let i = 2; existsSync(join(dir, name)); i++) name = `${date}-${desc}-${i}.md`;
  writeFileSync(join(dir, name), report);
  if (only !== null) {
    log(`wrote bench/results/${name} (a partial run: latest.md is left to complete runs)`);
    return;
  }
  writeFileSync(join(dir, 'latest.md'), report);
  log(`wrote bench/results/${name} and bench/results/latest.md`);
}

let code = 1;
try {
  code = await main();
} catch (err) {
  if (err instanceof Error && err.message === 'interrupted') console.error('bench interrupted');
  else console.error(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  code = 1;
} finally {
  await cleanupAll();
}
process.exit(code);
