// How many workers `workers: 0` means: one per CPU this process may use. In a
// container the CPU limit (cgroup quota) is what counts, not the host's cores:
// a pod limited to 2 CPUs on a 64-core node must not fork 64 workers, each with
// its own pools and tens of MB of memory. Fractions round down (1.5 CPUs → 1),
// as Go's automaxprocs does, so workers are not throttled mid-transaction.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

/** The cgroup CPU limit in CPUs (v2 cpu.max, else v1 cfs quota/period), or null when there is none. */
export function cgroupCpuLimit(root = '/sys/fs/cgroup'): number | null {
  const v2 = read(join(root, 'cpu.max'));
  if (v2 !== null) {
    const [quota, period] = v2.split(/\s+/);
    return quota === 'max' ? null : ratio(Number(quota), Number(period ?? 100_000));
  }
  for (const dir of ['cpu', 'cpu,cpuacct']) {
    const quota = read(join(root, dir, 'cpu.cfs_quota_us'));
    const period = read(join(root, dir, 'cpu.cfs_period_us'));
    if (quota !== null && period !== null) return ratio(Number(quota), Number(period));
  }
  return null;
}

/** Workers for `workers: 0`: the CPUs available to this process, capped by the cgroup limit, at least 1. */
export function defaultWorkerCount(cpus = availableParallelism(), limit = cgroupCpuLimit()): number {
  return Math.max(1, limit === null ? cpus : Math.min(cpus, Math.floor(limit)));
}

function ratio(quota: number, period: number): number | null {
  return Number.isFinite(quota) && Number.isFinite(period) && quota > 0 && period > 0 ? quota / period : null;
}

function read(file: string): string | null {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}
