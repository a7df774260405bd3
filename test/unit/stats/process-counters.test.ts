// Counters that belong to no pool: read into each worker's snapshot, summed
// over workers, and exported as pg_ingress_*_total counters.
import { describe, expect, it } from 'vitest';
import { ExporterMetrics } from '../../../src/metrics/exporter.js';
import { mergeSnapshots } from '../../../src/stats/merge.js';
import { processCounterValues, processCounters, type ProcessCounterValues } from '../../../src/stats/process-counters.js';
import type { WorkerSnapshot } from '../../../src/stats/snapshot.js';

function snapshot(worker: number, process?: ProcessCounterValues): WorkerSnapshot {
  return { worker, pid: worker, pools: [], databases: [], clients: [], servers: [], connections: 0, limits: { max_client_conn: 100, max_user_connections: 0 }, ...(process ? { process } : {}) };
}

describe('process counters', () => {
  it('are plain fields read by name into a snapshot row', () => {
    const before = processCounterValues();
    processCounters.uncaughtFaults++;
    processCounters.authThrottled += 2;
    const after = processCounterValues();
    expect(after.uncaught_faults - before.uncaught_faults).toBe(1);
    expect(after.auth_throttled - before.auth_throttled).toBe(2);
    expect(after.auth_failures).toBe(before.auth_failures);
  });

  it('are summed over workers; a snapshot without them adds nothing', () => {
    const merged = mergeSnapshots([
      snapshot(1, { auth_failures: 5, auth_throttled: 1, auth_lookups_rejected: 0, uncaught_faults: 2 }),
      snapshot(2, { auth_failures: 7, auth_throttled: 3, auth_lookups_rejected: 4, uncaught_faults: 0 }),
      snapshot(3),
    ]);
    expect(merged.process).toEqual({ auth_failures: 12, auth_throttled: 4, auth_lookups_rejected: 4, uncaught_faults: 2 });
    expect(mergeSnapshots([]).process).toEqual({ auth_failures: 0, auth_throttled: 0, auth_lookups_rejected: 0, uncaught_faults: 0 });
  });

  it('appear in /metrics as pg_ingress_*_total counters', async () => {
    const metrics = new ExporterMetrics();
    metrics.update(mergeSnapshots([snapshot(1, { auth_failures: 12, auth_throttled: 4, auth_lookups_rejected: 3, uncaught_faults: 1 })]));
    const text = await metrics.registry.metrics();
    expect(text).toContain('# TYPE pg_ingress_auth_throttled_total counter');
    expect(text).toMatch(/^pg_ingress_auth_throttled_total 4$/m);
    expect(text).toMatch(/^pg_ingress_auth_failures_total 12$/m);
    expect(text).toMatch(/^pg_ingress_auth_lookups_rejected_total 3$/m);
    expect(text).toMatch(/^pg_ingress_uncaught_faults_total 1$/m);
    // Each scrape replaces the values, as for every other series.
    metrics.update(mergeSnapshots([snapshot(1, { auth_failures: 13, auth_throttled: 4, auth_lookups_rejected: 3, uncaught_faults: 1 })]));
    expect(await metrics.registry.metrics()).toMatch(/^pg_ingress_auth_failures_total 13$/m);
  });
});
