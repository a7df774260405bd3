// The Markdown report: one results table with ratio rows, the targets
// marked PASS/MISS, idle memory, the framer microbenchmark, machine and notes.
import type { FramerResult } from './framer-bench.js';
import type { IdleResult } from './memory.js';
import { fmt, fmtBytes, fmtRatio, ratio, type CellSummary } from './stats.js';
import type { TargetId, Workload } from './workloads.js';

export interface ReportInput {
  title: string;
  machine: [string, string][];
  settings: [string, string][];
  workloads: Workload[];
  targets: { id: TargetId; label: string }[];
  cells: Map<string, CellSummary>;
  idle: Map<string, IdleResult>; // `${proxy}|${clients}`
  idleCounts: number[];
  framer: FramerResult[] | null;
  notes: string[];
  raw: string[];
}

export const cellKey = (w: string, t: TargetId): string => `${w}|${t}`;

export interface TargetCheck {
  goal: string;
  measured: string;
  verdict: 'PASS' | 'MISS' | 'n/a';
}

function errorsText(c: CellSummary | undefined): string {
  if (!c) return '';
  const parts: string[] = [];
  if (c.abortedClients > 0) parts.push(`${c.abortedClients} clients aborted`);
  if (c.failedTransactions > 0) parts.push(`${c.failedTransactions} failed tx`);
  if (c.failedRounds > 0) parts.push(`${c.failedRounds}/${c.rounds} runs failed`);
  if (parts.length > 0 && c.error) parts.push(`first: ${c.error.replaceAll('|', '\\|').slice(0, 160)}`);
  return parts.join('; ');
}

export function targetChecks(input: ReportInput): TargetCheck[] {
  const cell = (w: string, t: TargetId): CellSummary | undefined => input.cells.get(cellKey(w, t));
  const bigClients = input.workloads.find((w) => w.id === 'select-tx-big')?.clients ?? 1000;
  const checks: TargetCheck[] = [];
  const clean = (c: CellSummary | undefined): boolean => !!c && c.abortedClients === 0 && c.failedTransactions === 0 && c.failedRounds === 0;
  const check = (goal: string, w: string, a: TargetId, b: TargetId, metric: 'tps' | 'cpuPer1000' | 'p99Ms', want: (r: number) => boolean, label: string): void => {
    const ca = cell(w, a);
    const cb = cell(w, b);
    const r = ratio(ca?.[metric] ?? null, cb?.[metric] ?? null);
    if (r === null) {
      checks.push({ goal, measured: ca || cb ? 'no data' : 'not run', verdict: 'n/a' });
      return;
    }
    const ok = want(r) && clean(ca);
    checks.push({ goal, measured: `${label} ${fmtRatio(r)}${clean(ca) ? '' : ' (pg-ingress had errors)'}`, verdict: ok ? 'PASS' : 'MISS' });
  };
  check('transaction `-S` 100 clients: tps ≥ 1.10× PgBouncer', 'select-tx-100', 'pg-ingress', 'pgbouncer', 'tps', (r) => r >= 1.1, 'tps');
  check('transaction `-S` 100 clients: proxy CPU/tx ≤ PgBouncer', 'select-tx-100', 'pg-ingress', 'pgbouncer', 'cpuPer1000', (r) => r <= 1.0, 'CPU/tx');
  check('session `-S` 10 clients: tps ≥ 1.0× PgBouncer', 'select-session-10', 'pg-ingress', 'pgbouncer', 'tps', (r) => r >= 1.0, 'tps');
  check('session TPC-B 20 clients: tps ≥ 1.0× PgBouncer', 'tpcb-session-20', 'pg-ingress', 'pgbouncer', 'tps', (r) => r >= 1.0, 'tps');
  check('`-C` (login per tx): tps ≥ 1.0× PgBouncer', 'connect-select-10', 'pg-ingress', 'pgbouncer', 'tps', (r) => r >= 1.0, 'tps');
  check(`${bigClients} clients on pool 20: tps ≥ 1.0× PgBouncer`, 'select-tx-big', 'pg-ingress', 'pgbouncer', 'tps', (r) => r >= 1.0, 'tps');
  check(`${bigClients} clients on pool 20: p99 ≤ PgBouncer`, 'select-tx-big', 'pg-ingress', 'pgbouncer', 'p99Ms', (r) => r <= 1.0, 'p99');
  check('`-M prepared` transaction pool: tps ≥ 0.9× direct TLS', 'prepared-tx-10', 'pg-ingress', 'direct-tls', 'tps', (r) => r >= 0.9, 'tps');
  for (const n of input.idleCounts) {
    const a = input.idle.get(`pg-ingress|${n}`);
    const b = input.idle.get(`pgbouncer|${n}`);
    const r = ratio(a?.bytesPerClient ?? null, b?.bytesPerClient ?? null);
    const goal = `idle TLS client (${n} clients): bytes ≤ 2× PgBouncer`;
    if (r === null) checks.push({ goal, measured: a || b ? 'no data' : 'not run', verdict: 'n/a' });
    else checks.push({ goal, measured: `${fmtBytes(a!.bytesPerClient)} vs ${fmtBytes(b!.bytesPerClient)} = ${fmtRatio(r)}`, verdict: r <= 2 && !a!.error ? 'PASS' : 'MISS' });
  }
  return checks;
}

export function renderReport(input: ReportInput): string {
  const out: string[] = [`# ${input.title}`, ''];
  out.push('| | |', '|---|---|', ...input.machine.map(([k, v]) => `| ${k} | ${v} |`), '');
  out.push('Settings: ' + input.settings.map(([k, v]) => `${k} ${v}`).join('; ') + '.', '');

  out.push('## Throughput, latency, proxy CPU', '');
  out.push('Median over rounds; targets interleaved within each round. avg and p99 from pgbench per-transaction logs. Proxy CPU = user+system time of the proxy process tree per 1000 transactions (includes client logins). Server logins: sessions PostgreSQL counted in app1 during a proxy\'s cell (servers the proxy opened: pool fill, and servers closed in one worker for another), median over rounds.', '');
  out.push('| workload | target | tps | avg ms | p99 ms | proxy CPU s/1000 tx | server logins | errors |', '|---|---|--:|--:|--:|--:|--:|---|');
  for (const w of input.workloads) {
    const row = (t: { id: TargetId; label: string }): CellSummary | undefined => input.cells.get(cellKey(w.id, t.id));
    for (const t of input.targets) {
      const c = row(t);
      if (!c) continue;
      out.push(`| ${w.title} | ${t.label} | ${fmt(c.tps, 0)} | ${fmt(c.avgMs, 3)} | ${fmt(c.p99Ms, 3)} | ${fmt(c.cpuPer1000, 4)} | ${fmt(c.serverLogins, 0)} | ${errorsText(c)} |`);
    }
    const ing = input.cells.get(cellKey(w.id, 'pg-ingress'));
    const pgb = input.cells.get(cellKey(w.id, 'pgbouncer'));
    const tls = input.cells.get(cellKey(w.id, 'direct-tls'));
    if (ing && pgb) {
      const caveat = errorsText(pgb) ? 'PgBouncer had errors: not comparable' : '';
      out.push(`| ${w.title} | **pg-ingress / PgBouncer** | **${fmtRatio(ratio(ing.tps, pgb.tps))}** | ${fmtRatio(ratio(ing.avgMs, pgb.avgMs))} | ${fmtRatio(ratio(ing.p99Ms, pgb.p99Ms))} | **${fmtRatio(ratio(ing.cpuPer1000, pgb.cpuPer1000))}** | | ${caveat} |`);
    }
    if (ing && tls) out.push(`| ${w.title} | **pg-ingress / direct TLS** | **${fmtRatio(ratio(ing.tps, tls.tps))}** | ${fmtRatio(ratio(ing.avgMs, tls.avgMs))} | ${fmtRatio(ratio(ing.p99Ms, tls.p99Ms))} | | | |`);
    const pipe = input.cells.get(cellKey(w.id, 'node-pipe'));
    if (ing && pipe) out.push(`| ${w.title} | **pg-ingress / Node.js TLS pipe** | **${fmtRatio(ratio(ing.tps, pipe.tps))}** | ${fmtRatio(ratio(ing.avgMs, pipe.avgMs))} | ${fmtRatio(ratio(ing.p99Ms, pipe.p99Ms))} | **${fmtRatio(ratio(ing.cpuPer1000, pipe.cpuPer1000))}** | | |`);
    if (pipe && pgb) out.push(`| ${w.title} | Node.js TLS pipe / PgBouncer | ${fmtRatio(ratio(pipe.tps, pgb.tps))} | ${fmtRatio(ratio(pipe.avgMs, pgb.avgMs))} | ${fmtRatio(ratio(pipe.p99Ms, pgb.p99Ms))} | ${fmtRatio(ratio(pipe.cpuPer1000, pgb.cpuPer1000))} | | |`);
  }
  out.push('');

  out.push('## Targets (from the issue)', '', '| target | measured (pg-ingress vs reference) | |', '|---|---|---|');
  for (const c of targetChecks(input)) out.push(`| ${c.goal} | ${c.measured} | ${c.verdict === 'PASS' ? '✅ PASS' : c.verdict === 'MISS' ? '❌ MISS' : 'n/a'} |`);
  out.push('');

  if (input.idle.size > 0) {
    out.push('## Idle TLS clients: proxy RSS', '', 'Fresh proxy, one warm-up login, then N authenticated node-postgres TLS clients (transaction pool) left idle; RSS of the proxy process tree (VmRSS) before and after.', '');
    out.push('| proxy | clients | connected | RSS before | RSS after | bytes / idle client | notes |', '|---|--:|--:|--:|--:|--:|---|');
    for (const n of input.idleCounts) {
      for (const p of ['pgbouncer', 'pg-ingress'] as const) {
        const r = input.idle.get(`${p}|${n}`);
        if (!r) continue;
        const label = input.targets.find((t) => t.id === p)?.label ?? p;
        const notes = [r.error, r.warning].filter(Boolean).join('; ').replaceAll('|', '\\|');
        out.push(`| ${label} | ${n} | ${r.connected} | ${fmtBytes(r.rssBefore)} | ${fmtBytes(r.rssAfter)} | ${fmtBytes(r.bytesPerClient)} | ${notes} |`);
      }
      const a = input.idle.get(`pg-ingress|${n}`);
      const b = input.idle.get(`pgbouncer|${n}`);
      if (a && b) out.push(`| **pg-ingress / PgBouncer** | ${n} | | | | **${fmtRatio(ratio(a.bytesPerClient, b.bytesPerClient))}** | |`);
    }
    out.push('');
  }

  if (input.framer) {
    out.push('## Framer/relay microbenchmark (no network)', '', 'Server message stream cut into 16 KB chunks, through `Framer` into a sink that does what the relay does (count, track `Z` status, coalesce runs of a chunk into forwarded slices).', '');
    out.push('| stream | MB/s | ns / message |', '|---|--:|--:|');
    for (const f of input.framer) out.push(`| ${f.name} | ${f.mbPerSec.toFixed(0)} | ${f.nsPerMessage.toFixed(1)} |`);
    out.push('');
  }

  if (input.notes.length > 0) out.push('## Notes', '', ...input.notes.map((n) => `- ${n}`), '');
  if (input.raw.length > 0) out.push('<details><summary>Per-run results</summary>', '', '```', ...input.raw, '```', '', '</details>', '');
  return out.join('\n');
}
