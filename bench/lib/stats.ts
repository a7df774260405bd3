// Per-cell aggregation over rounds (medians) and formatting helpers.
import type { CellResult } from './pgbench.js';

export interface CellSummary {
  rounds: number;
  tps: number | null;
  avgMs: number | null;
  p99Ms: number | null;
  cpuPer1000: number | null;
  serverLogins: number | null;
  transactions: number;
  abortedClients: number;
  failedTransactions: number;
  failedRounds: number;
  error: string | null;
}

export function median(values: readonly (number | null)[]): number | null {
  const v = values.filter((x): x is number => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

export function summarize(results: readonly CellResult[]): CellSummary {
  return {
    rounds: results.length,
    tps: median(results.map((r) => r.tps)),
    avgMs: median(results.map((r) => r.avgMs)),
    p99Ms: median(results.map((r) => r.p99Ms)),
    cpuPer1000: median(results.map((r) => r.cpuPer1000)),
    serverLogins: median(results.map((r) => r.serverLogins)),
    transactions: results.reduce((s, r) => s + r.transactions, 0),
    abortedClients: results.reduce((s, r) => s + r.abortedClients, 0),
    failedTransactions: results.reduce((s, r) => s + r.failedTransactions, 0),
    failedRounds: results.filter((r) => r.exitCode !== 0 || r.transactions === 0).length,
    error: results.find((r) => r.error !== null)?.error ?? null,
  };
}

export function fmt(v: number | null, digits: number): string {
  return v === null ? '—' : v.toFixed(digits);
}

export function ratio(a: number | null, b: number | null): number | null {
  return a === null || b === null || b === 0 ? null : a / b;
}

export function fmtRatio(r: number | null): string {
  return r === null ? '—' : `${r.toFixed(2)}×`;
}

export function fmtBytes(n: number | null): string {
  if (n === null) return '—';
  return Math.abs(n) >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : `${Math.round(n).toLocaleString('en-US')} B`;
}
