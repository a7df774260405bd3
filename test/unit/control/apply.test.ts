// applyControl in one process, against stand-in pools and clients: which pools
// and clients each control reaches, and that PAUSE and WAIT_CLOSE answer once
// their condition holds (driven here; fake timers, no sleeping).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ProxyContext } from '../../../src/context.js';
import { applyControl, globalClientId, isLocalControl, type LocalControl } from '../../../src/control/apply.js';
import type { Control } from '../../../src/control/control.js';
import type { PgError } from '../../../src/protocol/pg-error.js';

interface StandInPool {
  database: string;
  total: number;
  closeNeededCount: number;
  reconnects: number;
  reconnect(): void;
}

function standIn() {
  const pool = (database: string): StandInPool => ({ database, total: 0, closeNeededCount: 0, reconnects: 0, reconnect() { this.reconnects++; } });
  const pools = [pool('app'), pool('app'), pool('other')];
  const calls: string[] = [];
  const manager = {
    pause: (db: string | null) => calls.push(`pause ${db}`),
    resume: (db: string | null) => calls.push(`resume ${db}`),
    setDisabled: (db: string, disabled: boolean) => calls.push(`${disabled ? 'disable' : 'enable'} ${db}`),
    *of(db: string | null) {
      for (const p of pools) if (db === null || p.database === db) yield p;
    },
    // Stays paused: a RESUME meanwhile would end PAUSE's wait.
    isPaused: () => true,
    allPaused: true,
  };
  const clients = new Set<{ id: number; pool: { database: string }; killedWith: PgError | null; kill(err: PgError): void }>();
  const client = (id: number, database: string) => {
    const c = { id, pool: { database }, killedWith: null as PgError | null, kill(err: PgError) { c.killedWith = err; clients.delete(c); } };
    clients.add(c);
    return c;
  };
  const proxy = { pools: manager, clients, config: { databases: {} } } as unknown as ProxyContext;
  return { proxy, pools, calls, client };
}

/** Whether `p` has settled once pending timers and microtasks have had a turn. */
async function settledAfter(p: Promise<unknown>, ms = 100): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true));
  await vi.advanceTimersByTimeAsync(ms);
  return done;
}

describe('applyControl', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('PAUSE db pauses it and answers only once every pool of it has no server left', async () => {
    const { proxy, pools, calls } = standIn();
    pools[0]!.total = 2;
    pools[1]!.total = 1;
    pools[2]!.total = 5; // another database: not waited for
    const paused = applyControl(proxy, { kind: 'pause', database: 'app' }, 0);
    expect(calls).toEqual(['pause app']);
    expect(await settledAfter(paused)).toBe(false);
    pools[0]!.total = 0;
    expect(await settledAfter(paused)).toBe(false);
    pools[1]!.total = 0;
    expect(await settledAfter(paused)).toBe(true);
  });

  it('PAUSE alone waits for the servers of every database', async () => {
    const { proxy, pools, calls } = standIn();
    pools[2]!.total = 1;
    const paused = applyControl(proxy, { kind: 'pause', database: null }, 0);
    expect(calls).toEqual(['pause null']);
    expect(await settledAfter(paused)).toBe(false);
    pools[2]!.total = 0;
    expect(await settledAfter(paused)).toBe(true);
  });

  it('WAIT_CLOSE answers once no server of the database is still to be closed', async () => {
    const { proxy, pools } = standIn();
    pools[1]!.closeNeededCount = 1;
    pools[2]!.closeNeededCount = 3;
    const waiting = applyControl(proxy, { kind: 'wait_close', database: 'app' }, 0);
    expect(await settledAfter(waiting)).toBe(false);
    pools[1]!.closeNeededCount = 0;
    expect(await settledAfter(waiting)).toBe(true);
    const all = applyControl(proxy, { kind: 'wait_close', database: null }, 0);
    expect(await settledAfter(all)).toBe(false);
    pools[2]!.closeNeededCount = 0;
    expect(await settledAfter(all)).toBe(true);
  });

  it('RECONNECT db marks that database\'s pools only; RECONNECT alone every pool', async () => {
    const { proxy, pools } = standIn();
    await applyControl(proxy, { kind: 'reconnect', database: 'other' }, 0);
    expect(pools.map((p) => p.reconnects)).toEqual([0, 0, 1]);
    await applyControl(proxy, { kind: 'reconnect', database: null }, 0);
    expect(pools.map((p) => p.reconnects)).toEqual([1, 1, 2]);
  });

  it('RESUME, DISABLE and ENABLE go to the pool manager', async () => {
    const { proxy, calls } = standIn();
    await applyControl(proxy, { kind: 'resume', database: 'app' }, 0);
    await applyControl(proxy, { kind: 'resume', database: null }, 0);
    await applyControl(proxy, { kind: 'disable', database: 'app' }, 0);
    await applyControl(proxy, { kind: 'enable', database: 'app' }, 0);
    expect(calls).toEqual(['resume app', 'resume null', 'disable app', 'enable app']);
  });

  it('KILL db pauses it, kills only its clients with 57P01 and reconnects its pools', async () => {
    const { proxy, pools, calls, client } = standIn();
    const a1 = client(1, 'app');
    const a2 = client(2, 'app');
    const o = client(3, 'other');
    await applyControl(proxy, { kind: 'kill', database: 'app' }, 0);
    expect(calls).toEqual(['pause app']);
    expect(a1.killedWith?.code).toBe('57P01');
    expect(a1.killedWith?.severity).toBe('FATAL');
    expect(a2.killedWith?.code).toBe('57P01');
    expect(o.killedWith).toBeNull();
    expect(pools.map((p) => p.reconnects)).toEqual([1, 1, 0]);
  });

  it('KILL alone kills every client (also while kill() removes them from the set)', async () => {
    const { proxy, client } = standIn();
    const all = [client(1, 'app'), client(2, 'other'), client(3, 'app')];
    await applyControl(proxy, { kind: 'kill', database: null }, 0);
    expect(all.every((c) => c.killedWith?.code === '57P01')).toBe(true);
  });

  it('KILL_CLIENT kills the one client whose id SHOW CLIENTS shows, worker included', async () => {
    const { proxy, client } = standIn();
    const c7 = client(7, 'app');
    const c8 = client(8, 'app');
    await applyControl(proxy, { kind: 'kill_client', id: globalClientId(1, 7) }, 0); // worker 1's client 7, not ours
    expect(c7.killedWith).toBeNull();
    await applyControl(proxy, { kind: 'kill_client', id: globalClientId(2, 7) }, 2);
    expect(c7.killedWith?.code).toBe('57P01');
    expect(c8.killedWith).toBeNull();
  });
});

describe('globalClientId', () => {
  it('is unique across workers for any 32-bit id, and worker 0 keeps the id', () => {
    expect(globalClientId(0, 5)).toBe(5);
    expect(globalClientId(1, 0)).not.toBe(globalClientId(0, 2 ** 32 - 1));
    expect(globalClientId(3, 9)).toBe(3 * 2 ** 32 + 9);
    expect(Number.isSafeInteger(globalClientId(1000, 2 ** 32 - 1))).toBe(true);
  });
});

describe('isLocalControl', () => {
  it('is every control but RELOAD, SET and SHUTDOWN', () => {
    const local: Control[] = [{ kind: 'pause', database: null }, { kind: 'kill_client', id: 1 }, { kind: 'disable', database: 'a' }, { kind: 'wait_close', database: null }];
    const notLocal: Control[] = [{ kind: 'reload' }, { kind: 'set', key: 'a', value: 'b' }, { kind: 'shutdown', mode: 'immediate' }];
    for (const c of local) expect(isLocalControl(c)).toBe(true);
    for (const c of notLocal) expect(isLocalControl(c)).toBe(false);
    const typed: LocalControl = { kind: 'enable', database: 'a' };
    expect(isLocalControl(typed)).toBe(true);
  });
});
