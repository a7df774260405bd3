// ShutdownRequests: the first request picks the mode; a second signal, or a
// request to stop at once, makes it immediate; a milder console request does not.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ShutdownMode } from '../../../src/control/control.js';
import { ShutdownRequests } from '../../../src/control/shutdown-requests.js';

/** Whether `p` has settled after the microtasks queued now have run. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true));
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return done;
}

describe('ShutdownRequests', () => {
  it('first() waits for the first request and resolves with its mode', async () => {
    const s = new ShutdownRequests();
    const first = s.first();
    expect(await settled(first)).toBe(false);
    s.request('wait_for_clients', true);
    await expect(first).resolves.toBe('wait_for_clients');
    s.request('wait_for_servers', false);
    await expect(s.first()).resolves.toBe('wait_for_clients'); // later milder requests do not change it
  });

  it('a first request that is not immediate does not resolve immediate()', async () => {
    const s = new ShutdownRequests();
    const now = s.immediate();
    s.request('wait_for_servers', true);
    expect(await settled(now)).toBe(false);
  });

  it('a second signal escalates to immediate, whatever its mode', async () => {
    for (const [a, b] of [['wait_for_clients', 'wait_for_clients'], ['wait_for_clients', 'wait_for_servers'], ['wait_for_servers', 'wait_for_clients']] as const) {
      const s = new ShutdownRequests();
      const now = s.immediate();
      s.request(a, true);
      s.request(b, true);
      expect(await settled(now)).toBe(true);
      expect(await settled(s.immediate())).toBe(true); // asked after: resolves at once
    }
  });

  it('a console request of a milder mode after a signal does not escalate', async () => {
    const s = new ShutdownRequests();
    const now = s.immediate();
    s.request('wait_for_clients', true);
    s.request('wait_for_servers', false);
    s.request('wait_for_clients', false);
    expect(await settled(now)).toBe(false);
  });

  it('a request to stop at once escalates, from a signal or not', async () => {
    const s = new ShutdownRequests();
    const now = s.immediate();
    s.request('wait_for_clients', false);
    s.request('immediate', false);
    expect(await settled(now)).toBe(true);
  });

  it('an immediate first request resolves both first() and immediate(), once each', async () => {
    const s = new ShutdownRequests();
    const first = s.first();
    const now = s.immediate();
    s.request('immediate', false);
    await expect(first).resolves.toBe('immediate');
    expect(await settled(now)).toBe(true);
    s.request('immediate', true); // nothing left to do: no throw
  });

  it('any sequence with two signal requests ends immediate; one without a second signal or an immediate never does', async () => {
    const mode = fc.constantFrom<ShutdownMode>('immediate', 'wait_for_servers', 'wait_for_clients');
    const request = fc.record({ mode, fromSignal: fc.boolean() });
    await fc.assert(
      fc.asyncProperty(fc.array(request, { maxLength: 8 }), async (requests) => {
        const s = new ShutdownRequests();
        const now = s.immediate();
        for (const r of requests) s.request(r.mode, r.fromSignal);
        const signals = requests.filter((r) => r.fromSignal).length;
        const anyImmediate = requests.some((r) => r.mode === 'immediate');
        // After the first request, only a signal or an immediate request escalates.
        const escalates = anyImmediate || signals - (requests[0]?.fromSignal ? 1 : 0) > 0;
        expect(await settled(now)).toBe(requests.length > 0 && escalates);
        if (signals >= 2) expect(await settled(now)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});
