// ControlRelay, the primary's side of controls and reloads, against fake
// workers that record what they are sent and answer when the test says.
import type { Worker } from 'node:cluster';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, loadConfig, type Config } from '../../../src/config/index.js';
import type { ControlOutcome } from '../../../src/control/control.js';
import { createLogger } from '../../../src/log/logger.js';
import { ControlRelay } from '../../../src/workers/control-relay.js';

type Sent = { type: string; id?: number; config?: Config; control?: unknown; outcome?: ControlOutcome; states?: unknown; reload?: number };

class FakeWorker {
  connected = true;
  readonly sent: Sent[] = [];
  constructor(readonly id: number) {}
  isConnected(): boolean {
    return this.connected;
  }
  send(msg: Sent): boolean {
    this.sent.push(msg);
    return this.connected;
  }
  /** The messages of one type, in order. */
  of(type: string): Sent[] {
    return this.sent.filter((m) => m.type === `pg-ingress:${type}`);
  }
  last(type: string): Sent {
    const all = this.of(type);
    return all[all.length - 1]!;
  }
}

const asWorker = (w: FakeWorker): Worker => w as unknown as Worker;

function config(overrides: Record<string, unknown> = {}): Config {
  return loadConfig({ env: {}, overrides: { databases: { app: { host: 'h1', dbname: 'app' } }, log_level: 'silent', ...overrides } }); // the relay sets its logger's level from it
}

function setup(workers: FakeWorker[], loadConfigFn: () => Config = () => config({ default_pool_size: 9 })) {
  const shutdown = vi.fn();
  const relay = new ControlRelay(config(), { workers: () => workers.map(asWorker), loadConfig: loadConfigFn, shutdown, log: createLogger('silent') });
  const answer = (w: FakeWorker, msg: Record<string, unknown>): boolean => relay.onMessage(asWorker(w), msg);
  return { relay, shutdown, answer };
}

/** Tracks a promise's outcome without awaiting it. */
function track<T>(p: Promise<T>): { value: T | undefined; done: boolean } {
  const t: { value: T | undefined; done: boolean } = { value: undefined, done: false };
  void p.then((v) => Object.assign(t, { value: v, done: true }));
  return t;
}

const flush = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await Promise.resolve();
};

/** Answers every prepare of the workers (with `error` for the one named), then every commit or abort. */
async function answerReload(answer: (w: FakeWorker, m: Record<string, unknown>) => boolean, workers: FakeWorker[], errors: Map<FakeWorker, string> = new Map()): Promise<void> {
  for (const w of workers) answer(w, { type: 'pg-ingress:reload-prepared', id: w.last('reload-prepare').id, error: errors.get(w) ?? null });
  await flush();
  for (const w of workers) {
    const finish = w.sent[w.sent.length - 1]!;
    expect(finish.type).toMatch(/^pg-ingress:reload-(commit|abort)$/);
    answer(w, { type: 'pg-ingress:reload-done', id: finish.id });
  }
  await flush();
}

describe('ControlRelay: controls', () => {
  it('sends a control to every live worker and answers once all of them are done', async () => {
    const [w1, w2, gone] = [new FakeWorker(1), new FakeWorker(2), new FakeWorker(3)];
    gone.connected = false;
    const { relay, answer } = setup([w1, w2, gone]);
    const outcome = track(relay.run({ kind: 'pause', database: 'app' }));
    await flush();
    expect(w1.of('control')).toEqual([{ type: 'pg-ingress:control', id: expect.any(Number), control: { kind: 'pause', database: 'app' } }]);
    expect(w2.of('control')).toHaveLength(1);
    expect(gone.sent).toEqual([]);
    answer(w1, { type: 'pg-ingress:control-done', id: w1.last('control').id, error: null });
    await flush();
    expect(outcome.done).toBe(false);
    answer(w2, { type: 'pg-ingress:control-done', id: w2.last('control').id, error: null });
    await flush();
    expect(outcome.value).toEqual({ ok: true, warnings: [] });
  });

  it('answers with the errors the workers report', async () => {
    const [w1, w2] = [new FakeWorker(1), new FakeWorker(2)];
    const { relay, answer } = setup([w1, w2]);
    const outcome = track(relay.run({ kind: 'kill_client', id: 5 }));
    await flush();
    answer(w1, { type: 'pg-ingress:control-done', id: w1.last('control').id, error: null });
    answer(w2, { type: 'pg-ingress:control-done', id: w2.last('control').id, error: 'boom' });
    await flush();
    expect(outcome.value).toEqual({ ok: false, error: 'boom' });
  });

  it('a live worker whose send() returns false (a backed-up channel still delivers) is waited for, not failed', async () => {
    const w1 = new FakeWorker(1);
    w1.send = (msg) => (w1.sent.push(msg), false);
    const { relay, answer } = setup([w1]);
    const outcome = track(relay.run({ kind: 'resume', database: null }));
    await flush();
    answer(w1, { type: 'pg-ingress:control-done', id: w1.last('control').id, error: null });
    await flush();
    expect(outcome.value).toEqual({ ok: true, warnings: [] });
  });

  it('a late or unknown control-done is ignored', async () => {
    const w1 = new FakeWorker(1);
    const { relay, answer } = setup([w1]);
    expect(answer(w1, { type: 'pg-ingress:control-done', id: 999, error: null })).toBe(true);
    const outcome = track(relay.run({ kind: 'reconnect', database: null }));
    await flush();
    answer(w1, { type: 'pg-ingress:control-done', id: 999, error: null });
    await flush();
    expect(outcome.done).toBe(false);
  });

  it('SHUTDOWN answers first, then starts the shutdown, without asking the workers', async () => {
    const w1 = new FakeWorker(1);
    const { relay, shutdown } = setup([w1]);
    const outcome = await relay.run({ kind: 'shutdown', mode: 'wait_for_clients' });
    expect(outcome).toEqual({ ok: true, warnings: [] });
    expect(shutdown).not.toHaveBeenCalled();
    await new Promise((resolve) => setImmediate(resolve));
    expect(shutdown).toHaveBeenCalledWith('wait_for_clients');
    expect(w1.sent).toEqual([]);
  });

  it('answers a worker\'s control-request to that worker, once the control is done everywhere', async () => {
    const [w1, w2] = [new FakeWorker(1), new FakeWorker(2)];
    const { answer } = setup([w1, w2]);
    expect(answer(w2, { type: 'pg-ingress:control-request', id: 41, control: { kind: 'enable', database: 'app' } })).toBe(true);
    await flush();
    for (const w of [w1, w2]) answer(w, { type: 'pg-ingress:control-done', id: w.last('control').id, error: null });
    await flush();
    expect(w2.of('control-reply')).toEqual([{ type: 'pg-ingress:control-reply', id: 41, outcome: { ok: true, warnings: [] } }]);
    expect(w1.of('control-reply')).toEqual([]);
  });

  it('hands the running configuration to a worker that asks, and leaves other messages alone', async () => {
    const w1 = new FakeWorker(1);
    const { relay, answer } = setup([w1]);
    expect(answer(w1, { type: 'pg-ingress:config-request' })).toBe(true);
    await flush(); // after any reload in flight
    expect(w1.last('config').config).toBe(relay.config);
    expect(w1.last('config').states).toEqual({ pausedAll: false, paused: [], disabled: [] });
    expect(answer(w1, { type: 'pg-ingress:stats-reply', id: 1 })).toBe(false);
    expect(answer(w1, { type: 'something-else' })).toBe(false);
  });
});

describe('ControlRelay: reload', () => {
  it('prepares the new configuration in every worker and commits it only once all have prepared it', async () => {
    const [w1, w2] = [new FakeWorker(1), new FakeWorker(2)];
    const { relay, answer } = setup([w1, w2], () => config({ default_pool_size: 9, listen_port: 7001 }));
    const before = relay.config;
    const outcome = track(relay.run({ kind: 'reload' }));
    await flush();
    for (const w of [w1, w2]) {
      const prepare = w.last('reload-prepare');
      expect(prepare.config!.default_pool_size).toBe(9);
      expect(prepare.config!.listen_port).toBe(before.listen_port); // restart-only: the running value
    }
    answer(w1, { type: 'pg-ingress:reload-prepared', id: w1.last('reload-prepare').id, error: null });
    await flush();
    expect(w1.of('reload-commit')).toEqual([]); // not before w2 could
    answer(w2, { type: 'pg-ingress:reload-prepared', id: w2.last('reload-prepare').id, error: null });
    await flush();
    for (const w of [w1, w2]) expect(w.of('reload-commit')).toEqual([{ type: 'pg-ingress:reload-commit', id: expect.any(Number), reload: w.last('reload-prepare').id }]);
    expect(outcome.done).toBe(false); // until every worker says it has switched
    expect(relay.config).toBe(before);
    for (const w of [w1, w2]) answer(w, { type: 'pg-ingress:reload-done', id: w.last('reload-commit').id });
    await flush();
    expect(outcome.value).toEqual({ ok: true, warnings: [expect.stringMatching(/^listen_port changed/)] });
    expect(relay.config.default_pool_size).toBe(9);
    expect(relay.config.listen_port).toBe(before.listen_port);
    expect(relay.reloads).toMatchObject({ ok: 1, failed: 0 });
  });

  it('aborts in every worker when one could not prepare, and keeps the running configuration', async () => {
    const [w1, w2] = [new FakeWorker(1), new FakeWorker(2)];
    const { relay, answer } = setup([w1, w2]);
    const before = relay.config;
    const outcome = track(relay.run({ kind: 'reload' }));
    await flush();
    await answerReload(answer, [w1, w2], new Map([[w2, 'cannot read the certificate']]));
    for (const w of [w1, w2]) {
      expect(w.of('reload-abort')).toHaveLength(1);
      expect(w.of('reload-commit')).toEqual([]);
    }
    expect(outcome.value).toEqual({ ok: false, error: expect.stringMatching(/running configuration stays: cannot read the certificate$/) });
    expect(relay.config).toBe(before);
    expect(relay.reloads).toMatchObject({ ok: 0, failed: 1 });
  });

  it('counts a configuration that does not load as a failed reload, and asks no worker', async () => {
    const w1 = new FakeWorker(1);
    const { relay } = setup([w1], () => {
      throw new ConfigError(['app.yaml: default_pool_size: expected an integer >= 1, got 0']);
    });
    const outcome = await relay.run({ kind: 'reload' });
    expect(outcome).toEqual({ ok: false, error: expect.stringContaining('default_pool_size: expected an integer >= 1') });
    expect(relay.reloads).toMatchObject({ ok: 0, failed: 1 });
    expect(w1.sent).toEqual([]);
  });

  it('SET with a bad value answers its error without asking a worker; a good one is prepared everywhere', async () => {
    const w1 = new FakeWorker(1);
    const { relay, answer } = setup([w1]);
    expect(await relay.run({ kind: 'set', key: 'default_pool_size', value: 'zero' })).toEqual({ ok: false, error: expect.stringMatching(/^default_pool_size: /) });
    expect(await relay.run({ kind: 'set', key: 'auth_password', value: 'x' })).toEqual({ ok: false, error: expect.stringMatching(/secret/) });
    expect(w1.sent).toEqual([]);
    expect(relay.reloads.ok).toBe(0);

    const outcome = track(relay.run({ kind: 'set', key: 'default_pool_size', value: '11' }));
    await flush();
    expect(w1.last('reload-prepare').config!.default_pool_size).toBe(11);
    await answerReload(answer, [w1]);
    expect(outcome.value).toEqual({ ok: true, warnings: [] });
    expect(relay.config.default_pool_size).toBe(11);
  });

  it('runs one reload at a time: the second is prepared only after the first is done, and builds on it', async () => {
    const w1 = new FakeWorker(1);
    const { relay, answer } = setup([w1]);
    const first = track(relay.run({ kind: 'set', key: 'default_pool_size', value: '11' }));
    const second = track(relay.run({ kind: 'set', key: 'min_pool_size', value: '2' }));
    await flush();
    expect(w1.of('reload-prepare')).toHaveLength(1);
    await answerReload(answer, [w1]);
    expect(first.value).toMatchObject({ ok: true });
    expect(second.done).toBe(false);
    expect(w1.of('reload-prepare')).toHaveLength(2);
    const prepared = w1.last('reload-prepare').config!;
    expect(prepared.min_pool_size).toBe(2);
    expect(prepared.default_pool_size).toBe(11); // the first SET is not lost
    await answerReload(answer, [w1]);
    expect(second.value).toMatchObject({ ok: true });
  });

  it('a reload after a failed one still runs', async () => {
    const w1 = new FakeWorker(1);
    let calls = 0;
    const { relay, answer } = setup([w1], () => {
      if (calls++ === 0) throw new Error('unexpected');
      return config({ default_pool_size: 4 });
    });
    const first = relay.run({ kind: 'reload' });
    const second = track(relay.run({ kind: 'reload' }));
    expect(await first).toMatchObject({ ok: false });
    await flush();
    await answerReload(answer, [w1]);
    expect(second.value).toMatchObject({ ok: true });
    expect(relay.reloads).toMatchObject({ ok: 1, failed: 1 });
  });
});

describe('ControlRelay: workers that come and go', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('fails a reload a live worker does not answer within the step timeout, and aborts it everywhere', async () => {
    const [w1, w2] = [new FakeWorker(1), new FakeWorker(2)];
    const { relay, answer } = setup([w1, w2]);
    const outcome = track(relay.run({ kind: 'reload' }));
    await flush();
    answer(w1, { type: 'pg-ingress:reload-prepared', id: w1.last('reload-prepare').id, error: null });
    await vi.advanceTimersByTimeAsync(30_000);
    expect(w1.of('reload-abort')).toHaveLength(1);
    answer(w1, { type: 'pg-ingress:reload-done', id: w1.last('reload-abort').id });
    answer(w2, { type: 'pg-ingress:reload-done', id: w2.last('reload-abort').id });
    await flush();
    expect(outcome.value).toEqual({ ok: false, error: expect.stringContaining('worker 2 did not answer') });
  });

  // Defect: nothing tells the relay that a worker exited (primary.ts's 'exit' handler does not), so a control waits for the
  // dead worker's control-done until CONTROL_TIMEOUT_MS, 24 hours: a worker crash during PAUSE leaves the console hanging.
  it('answers a control within a minute when a worker exits before it is done', async () => {
    const [w1, w2] = [new FakeWorker(1), new FakeWorker(2)];
    const { relay, answer } = setup([w1, w2]);
    const outcome = track(relay.run({ kind: 'pause', database: null }));
    await flush();
    answer(w1, { type: 'pg-ingress:control-done', id: w1.last('control').id, error: null });
    w2.connected = false;
    relay.workerGone(w2 as never); // the primary, on the worker's 'exit'
    await vi.advanceTimersByTimeAsync(60_000);
    expect(outcome.done).toBe(true);
  });
});

// Defect: a worker started while a reload is in flight (a crashed one, forked again after 1 s) asks for its
// configuration and gets the old one, since `running` changes only after every commit; it is not among the reload's
// workers either, so it keeps the old configuration while the others switch ("all workers switch together").
it('a worker that starts during a reload ends up with the new configuration', async () => {
  const w1 = new FakeWorker(1);
  const workers = [w1];
  const { relay, answer } = setup(workers);
  const outcome = track(relay.run({ kind: 'set', key: 'default_pool_size', value: '11' }));
  await flush();
  const late = new FakeWorker(2);
  workers.push(late);
  answer(late, { type: 'pg-ingress:config-request' });
  await answerReload(answer, [w1]);
  expect(outcome.value).toMatchObject({ ok: true });
  const received = [...late.of('config').map((m) => m.config!), ...late.of('reload-prepare').map((m) => m.config!)];
  expect(received[received.length - 1]!.default_pool_size).toBe(11);
});
