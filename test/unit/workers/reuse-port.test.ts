import { describe, expect, it } from 'vitest';
import { listenWithReusePort, nodeHasReusePort } from '../../../src/workers/reuse-port.js';

describe('reusePort', () => {
  it('is in Node 22.12+, 23.1+ and 24+', () => {
    expect(['20.19.0', '22.11.0', '23.0.0'].map((v) => nodeHasReusePort(v))).toEqual([false, false, false]);
    expect(['22.12.0', '23.1.0', '24.0.0', '25.2.1'].map((v) => nodeHasReusePort(v))).toEqual([true, true, true, true]);
  });

  it('is used by workers only, not for port 0, and not when turned off', () => {
    expect(listenWithReusePort('auto', true, 6432, '24.1.0')).toBe(true);
    expect(listenWithReusePort('auto', true, 6432, '20.19.0')).toBe(false);
    expect(listenWithReusePort('auto', false, 6432, '24.1.0')).toBe(false);
    expect(listenWithReusePort('auto', true, 0, '24.1.0')).toBe(false);
    expect(listenWithReusePort('off', true, 6432, '24.1.0')).toBe(false);
  });
});
