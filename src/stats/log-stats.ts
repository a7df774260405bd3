// The log_stats line: once per stats_period, one line of averages over the
// whole proxy (every database, and with workers every worker, as the primary
// sees them merged), in PgBouncer's words (its stats.c, refresh_stats):
//   stats: 12 xacts/s, 30 queries/s, in 4096 B/s, out 8192 B/s, xact 1500 us, query 600 us, wait 20 us
// Counts and bytes are per second of the period; times are per transaction,
// query and server assignment. PgBouncer's prepared-statement and login rates
// are left out: pg-ingress does not count those.
import type { Logger } from '../log/logger.js';
import type { StatsCollector } from './collector.js';
import { COUNTER_NAMES, zeroCounters, type CounterValues } from './counters.js';
import type { ClusterStats } from './merge.js';
import { everyStatsPeriod } from './period.js';

export interface StatsLogSettings {
  log_stats: boolean;
  stats_period: number;
}

/** One period's averages, PgBouncer's calc_average. */
export interface StatsAverages {
  xacts_per_s: number;
  queries_per_s: number;
  in_bytes_per_s: number;
  out_bytes_per_s: number;
  xact_us: number;
  query_us: number;
  wait_us: number;
}

/** The totals of every pool at one moment, and which workers they cover. */
export interface StatsSample {
  at: number;
  workers: string;
  pools: Map<string, CounterValues>;
}

export function takeSample(stats: ClusterStats, at: number): StatsSample {
  const pools = new Map<string, CounterValues>();
  for (const p of stats.pools) pools.set(`${p.database}\0${p.user}`, p.totals);
  return { at, workers: stats.workers.join(','), pools };
}

/**
 * What the pools added between two samples. A pool made since counts from
 * zero; a counter that went down (a pool dropped and made anew, a worker
 * restarted) adds nothing this period rather than a negative amount.
 */
export function periodDelta(prev: StatsSample, cur: StatsSample): CounterValues {
  const delta = zeroCounters();
  for (const [key, now] of cur.pools) {
    const before = prev.pools.get(key);
    for (const k of COUNTER_NAMES) delta[k] += Math.max(0, now[k] - (before?.[k] ?? 0));
  }
  return delta;
}

export function averages(delta: CounterValues, seconds: number): StatsAverages {
  const perSecond = (n: number): number => (seconds > 0 ? Math.floor(n / seconds) : 0);
  const per = (total: number, count: number): number => (count > 0 ? Math.floor(total / count) : 0);
  return {
    xacts_per_s: perSecond(delta.xact_count),
    queries_per_s: perSecond(delta.query_count),
    in_bytes_per_s: perSecond(delta.received),
    out_bytes_per_s: perSecond(delta.sent),
    xact_us: per(delta.xact_time, delta.xact_count),
    query_us: per(delta.query_time, delta.query_count),
    wait_us: per(delta.wait_time, delta.server_assignment_count),
  };
}

export function statsLine(a: StatsAverages): string {
  return `stats: ${a.xacts_per_s} xacts/s, ${a.queries_per_s} queries/s, in ${a.in_bytes_per_s} B/s, out ${a.out_bytes_per_s} B/s, xact ${a.xact_us} us, query ${a.query_us} us, wait ${a.wait_us} us`;
}

/**
 * Writes the line every stats_period while log_stats is on. Both are read from
 * `settings()` each period, so a reload applies from the next one.
 * @returns stop()
 */
export function startStatsLog(collector: StatsCollector, settings: () => StatsLogSettings, log: Logger, now: () => number = Date.now): () => void {
  // Every counter starts at zero with the process, so the first period counts from an empty sample.
  let prev: StatsSample = { at: now(), workers: '', pools: new Map() };
  let busy = false;
  const onPeriod = async (): Promise<void> => {
    if (!settings().log_stats || busy) return;
    busy = true;
    try {
      const cur = takeSample(await collector.collect(), now());
      // A worker that did not answer (or answers again) would count its whole totals as one period's.
      if (prev.workers === '' || prev.workers === cur.workers) {
        const a = averages(periodDelta(prev, cur), (cur.at - prev.at) / 1000);
        if (settings().log_stats) log.info({ averages: a }, statsLine(a));
      }
      prev = cur;
    } catch (err) {
      log.debug({ err: (err as Error).message }, 'log_stats: statistics could not be collected');
    } finally {
      busy = false;
    }
  };
  return everyStatsPeriod(() => settings().stats_period, () => void onPeriod());
}
