// The log_stats line: PgBouncer's averages over one stats_period, from the
// counters every worker's pools report, written on the stats_period clock.
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../../src/log/logger.js';
import type { StatsCollector } from '../../../src/stats/collector.js';
import { zeroCounters, type CounterValues } from '../../../src/stats/counters.js';
import { averages, periodDelta, startStatsLog, statsLine, takeSample, type StatsLogSettings } from '../../../src/stats/log-stats.js';
import type { ClusterStats } from '../../../src/stats/merge.js';

const counters = (c: Partial<CounterValues>): CounterValues => ({ ...zeroCounters(), ...c });

/** Only what the log reads of a merged view: which workers answered and each pool's totals. */
function cluster(workers: number[], pools: [db: string, user: string, totals: Partial<CounterValues>][]): ClusterStats {
  return { workers, pools: pools.map(([database, user, totals]) => ({ database, user, totals: counters(totals) })) } as unknown as ClusterStats;
}

describe('one period', () => {
  it('adds what every pool added; a new pool counts from zero; a counter that went down adds nothing', () => {
    const prev = takeSample(cluster([0], [['app', 'a', { xact_count: 10, received: 500 }], ['app', 'b', { xact_count: 50 }]]), 0);
    const cur = takeSample(cluster([0], [['app', 'a', { xact_count: 25, received: 800 }], ['app', 'b', { xact_count: 3 }], ['other', 'a', { xact_count: 4 }]]), 10_000);
    expect(periodDelta(prev, cur)).toEqual(counters({ xact_count: 15 + 0 + 4, received: 300 }));
  });

  it('averages as PgBouncer: counts and bytes per second, times per transaction, query and server assignment', () => {
    const delta = counters({ xact_count: 120, query_count: 300, server_assignment_count: 60, received: 6000, sent: 60_001, xact_time: 120 * 1500, query_time: 300 * 600, wait_time: 60 * 20 });
    const a = averages(delta, 60);
    expect(a).toEqual({ xacts_per_s: 2, queries_per_s: 5, in_bytes_per_s: 100, out_bytes_per_s: 1000, xact_us: 1500, query_us: 600, wait_us: 20 });
    expect(statsLine(a)).toBe('stats: 2 xacts/s, 5 queries/s, in 100 B/s, out 1000 B/s, xact 1500 us, query 600 us, wait 20 us');
  });

  it('an idle period is all zeros, not a division by zero', () => {
    expect(statsLine(averages(zeroCounters(), 60))).toBe('stats: 0 xacts/s, 0 queries/s, in 0 B/s, out 0 B/s, xact 0 us, query 0 us, wait 0 us');
  });
});

describe('startStatsLog', () => {
  let lines: Record<string, unknown>[];
  let log: ReturnType<typeof createLogger>;
  beforeEach(() => {
    vi.useFakeTimers();
    lines = [];
    log = createLogger(
      'info',
      new Writable({
        write(chunk: Buffer, _enc, done) {
          for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
          done();
        },
      }),
    );
  });
  afterEach(() => vi.useRealTimers());

  /** A collector whose totals grow by `perPeriod` transactions (1 ms each) every time it is asked. */
  function growing(perPeriod: number, workers = [1, 2]): StatsCollector & { asked: number } {
    const c = {
      asked: 0,
      collect: () => {
        c.asked++;
        const n = perPeriod * c.asked;
        return Promise.resolve(cluster(workers, [['app', 'u', { xact_count: n, query_count: 2 * n, xact_time: 1000 * n, query_time: 1000 * n }]]));
      },
    };
    return c;
  }

  const flush = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };
  const msgs = (): unknown[] => lines.map((l) => l.msg);

  it('one line per stats_period, as averages over that period, with the numbers as fields', async () => {
    const settings: StatsLogSettings = { log_stats: true, stats_period: 10 };
    const stop = startStatsLog(growing(50), () => settings, log, () => Date.now());
    await vi.advanceTimersByTimeAsync(9_999);
    expect(lines).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    await flush();
    await vi.advanceTimersByTimeAsync(10_000);
    await flush();
    stop();
    expect(msgs()).toEqual(['stats: 5 xacts/s, 10 queries/s, in 0 B/s, out 0 B/s, xact 1000 us, query 500 us, wait 0 us', 'stats: 5 xacts/s, 10 queries/s, in 0 B/s, out 0 B/s, xact 1000 us, query 500 us, wait 0 us']);
    expect(lines[0]).toMatchObject({ level: 30, averages: { xacts_per_s: 5, queries_per_s: 10, xact_us: 1000, query_us: 500 } });
  });

  it('reads log_stats and stats_period each period: off writes nothing and asks nothing; a new period applies from the next one', async () => {
    const settings: StatsLogSettings = { log_stats: false, stats_period: 10 };
    const collector = growing(100);
    const stop = startStatsLog(collector, () => settings, log, () => Date.now());
    await vi.advanceTimersByTimeAsync(30_000);
    await flush();
    expect(lines).toHaveLength(0);
    expect(collector.asked).toBe(0);
    settings.log_stats = true;
    settings.stats_period = 2;
    await vi.advanceTimersByTimeAsync(10_000); // the wait begun under 10 s ends first
    await flush();
    // 100 transactions since the start, 40 s ago.
    expect(msgs()).toEqual(['stats: 2 xacts/s, 5 queries/s, in 0 B/s, out 0 B/s, xact 1000 us, query 500 us, wait 0 us']);
    await vi.advanceTimersByTimeAsync(2_000);
    await flush();
    expect(msgs()).toHaveLength(2);
    expect(msgs()[1]).toBe('stats: 50 xacts/s, 100 queries/s, in 0 B/s, out 0 B/s, xact 1000 us, query 500 us, wait 0 us');
    stop();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(msgs()).toHaveLength(2);
  });

  it('skips a period whose workers differ from the last (a missing worker would count its totals twice)', async () => {
    let workers = [1, 2];
    let n = 0;
    const collector: StatsCollector = { collect: () => Promise.resolve(cluster(workers, [['app', 'u', { xact_count: (n += 10) }]])) };
    const stop = startStatsLog(collector, () => ({ log_stats: true, stats_period: 1 }), log, () => Date.now());
    await vi.advanceTimersByTimeAsync(1_000);
    await flush();
    workers = [1];
    await vi.advanceTimersByTimeAsync(1_000);
    await flush();
    await vi.advanceTimersByTimeAsync(1_000);
    await flush();
    stop();
    expect(msgs().map((m) => String(m).split(',')[0])).toEqual(['stats: 10 xacts/s', 'stats: 10 xacts/s']);
  });

  it('a collector that fails writes no line and the clock goes on', async () => {
    let fail = true;
    const collector: StatsCollector = { collect: () => (fail ? Promise.reject(new Error('no primary')) : Promise.resolve(cluster([0], []))) };
    const stop = startStatsLog(collector, () => ({ log_stats: true, stats_period: 1 }), log, () => Date.now());
    await vi.advanceTimersByTimeAsync(1_000);
    await flush();
    expect(lines).toHaveLength(0);
    fail = false;
    await vi.advanceTimersByTimeAsync(1_000);
    await flush();
    stop();
    expect(msgs()).toEqual(['stats: 0 xacts/s, 0 queries/s, in 0 B/s, out 0 B/s, xact 0 us, query 0 us, wait 0 us']);
  });
});
