// One benchmark cell: a pgbench run against one target, with per-transaction
// logs for the latency distribution and the proxy's CPU time read from /proc
// before and after.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { USERS } from '../../test/harness/postgres.js';
import { onCleanup } from './cleanup.js';
import { RAISE_FD_LIMIT } from './daemon.js';
import { treeCpuSeconds } from './proc.js';

export interface CellSpec {
  port: number;
  db: string;
  env: NodeJS.ProcessEnv;
  clients: number;
  threads: number;
  /** `-T` (the clock includes the initial logins) or, if null, `-t` transactions per client. */
  seconds: number | null;
  transactionsPerClient?: number;
  args: readonly string[];
  logPrefix: string;
  /** Root pid of the proxy whose CPU time to account, if any. */
  proxyPid: number | null;
}

export interface CellResult {
  tps: number | null;
  avgMs: number | null;
  p99Ms: number | null;
  transactions: number;
  failedTransactions: number;
  abortedClients: number;
  /** Proxy CPU seconds per 1000 transactions. */
  cpuPer1000: number | null;
  exitCode: number | null;
  /** pgbench's "initial connection time" (not with -C). */
  connectMs: number | null;
  /** First error line pgbench printed, if any. */
  error: string | null;
  /** Server connections the proxy opened to PostgreSQL during the cell (set by the caller). */
  serverLogins: number | null;
}

const STDERR_KEEP = 64 * 1024;

export async function runPgbench(spec: CellSpec): Promise<CellResult> {
  const args = [
    '-h', '127.0.0.1',
    '-p', String(spec.port),
    '-U', USERS.scram.name,
    '-n',
    '-c', String(spec.clients),
    '-j', String(Math.min(spec.threads, spec.clients)),
    ...(spec.seconds !== null ? ['-T', String(spec.seconds)] : ['-t', String(spec.transactionsPerClient ?? 100)]),
    ...spec.args,
    '-l', '--log-prefix', spec.logPrefix,
    spec.db,
  ];
  const cpuBefore = spec.proxyPid === null ? 0 : treeCpuSeconds(spec.proxyPid);
  const child = spawn('sh', ['-c', RAISE_FD_LIMIT, 'sh', 'pgbench', ...args], { env: spec.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const unregister = onCleanup('pgbench', () => {
    child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  let abortedClients = 0;
  let firstError: string | null = null;
  let pendingLine = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    if (stderr.length < STDERR_KEEP) stderr += s;
    const lines = (pendingLine + s).split('\n');
    pendingLine = lines.pop()!;
    for (const line of lines) {
      if (/client \d+ (script \d+ )?aborted/.test(line)) abortedClients++;
      if (firstError === null && /error|fatal|FATAL|ERROR/.test(line)) firstError = line.trim();
    }
  });
  // pgbench stops by itself after -T; this is for a hung connect.
  const killer = setTimeout(() => child.kill('SIGKILL'), ((spec.seconds ?? 60) + 180) * 1000);
  const exitCode = await new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  clearTimeout(killer);
  unregister();
  const cpuAfter = spec.proxyPid === null ? 0 : treeCpuSeconds(spec.proxyPid);

  const num = (re: RegExp): number | null => {
    const m = re.exec(stdout);
    return m ? Number(m[1]) : null;
  };
  const transactions = num(/number of transactions actually processed: (\d+)/) ?? 0;
  const failedTransactions = num(/number of failed transactions: (\d+)/) ?? 0;
  const tps = num(/^tps = ([\d.]+)/m);
  const latencies = readLatencies(spec.logPrefix);
  let avgMs = num(/latency average = ([\d.]+) ms/);
  let p99Ms: number | null = null;
  if (latencies.length > 0) {
    let sum = 0;
    for (const v of latencies) sum += v;
    avgMs = sum / latencies.length / 1000;
    latencies.sort();
    p99Ms = latencies[Math.max(0, Math.ceil(latencies.length * 0.99) - 1)]! / 1000;
  }
  if (exitCode !== 0 && firstError === null) firstError = (stderr.trim().split('\n').pop() ?? '') || `pgbench exited with code ${exitCode}`;
  return {
    tps,
    avgMs,
    p99Ms,
    transactions,
    failedTransactions,
    abortedClients,
    cpuPer1000: spec.proxyPid !== null && transactions > 0 ? (cpuAfter - cpuBefore) / (transactions / 1000) : null,
    exitCode,
    connectMs: num(/initial connection time = ([\d.]+) ms/),
    error: firstError,
    serverLogins: null,
  };
}

/**
 * Latencies (µs) from pgbench's per-transaction logs `<prefix>.<pid>[.<thread>]`,
 * column 3; failed or skipped transactions ("failed", "skipped") are left out.
 * The log files are deleted after reading.
 */
function readLatencies(prefix: string): Float64Array {
  const dir = dirname(prefix);
  const base = `${basename(prefix)}.`;
  const chunks: number[] = [];
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(base)) continue;
    const path = join(dir, name);
    const text = readFileSync(path, 'utf8');
    rmSync(path, { force: true });
    let lineStart = 0;
    while (lineStart < text.length) {
      let lineEnd = text.indexOf('\n', lineStart);
      if (lineEnd < 0) lineEnd = text.length;
      // third space-separated field
      const s1 = text.indexOf(' ', lineStart);
      const s2 = s1 < 0 ? -1 : text.indexOf(' ', s1 + 1);
      const s3 = s2 < 0 ? -1 : text.indexOf(' ', s2 + 1);
      if (s3 > 0 && s3 < lineEnd) {
        const v = Number(text.slice(s2 + 1, s3));
        if (Number.isFinite(v)) chunks.push(v);
      }
      lineStart = lineEnd + 1;
    }
  }
  return Float64Array.from(chunks);
}
