import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cgroupCpuLimit, defaultWorkerCount } from '../../../src/workers/cpu-budget.js';

const roots: string[] = [];
function cgroupRoot(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'cgroup-'));
  roots.push(root);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), `${text}\n`);
  }
  return root;
}
afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

describe('cgroupCpuLimit', () => {
  it('reads cgroup v2 cpu.max', () => {
    expect(cgroupCpuLimit(cgroupRoot({ 'cpu.max': '250000 100000' }))).toBe(2.5);
    expect(cgroupCpuLimit(cgroupRoot({ 'cpu.max': 'max 100000' }))).toBeNull();
  });
  it('reads cgroup v1 cfs quota and period, under cpu or cpu,cpuacct', () => {
    expect(cgroupCpuLimit(cgroupRoot({ 'cpu/cpu.cfs_quota_us': '200000', 'cpu/cpu.cfs_period_us': '100000' }))).toBe(2);
    expect(cgroupCpuLimit(cgroupRoot({ 'cpu,cpuacct/cpu.cfs_quota_us': '50000', 'cpu,cpuacct/cpu.cfs_period_us': '100000' }))).toBe(0.5);
    expect(cgroupCpuLimit(cgroupRoot({ 'cpu/cpu.cfs_quota_us': '-1', 'cpu/cpu.cfs_period_us': '100000' }))).toBeNull();
  });
  it('is null without cgroup files or with garbage in them', () => {
    expect(cgroupCpuLimit(cgroupRoot({}))).toBeNull();
    expect(cgroupCpuLimit(cgroupRoot({ 'cpu.max': 'lots 0' }))).toBeNull();
  });
});

describe('defaultWorkerCount', () => {
  it('is one per CPU without a limit, and the whole CPUs of a limit below that', () => {
    expect(defaultWorkerCount(8, null)).toBe(8);
    expect(defaultWorkerCount(64, 2)).toBe(2);
    expect(defaultWorkerCount(64, 1.5)).toBe(1);
    expect(defaultWorkerCount(4, 16)).toBe(4);
  });
  it('is at least 1, even under a fractional limit', () => {
    expect(defaultWorkerCount(64, 0.5)).toBe(1);
  });
});
