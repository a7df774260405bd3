// LocalOperator, a single-process proxy's controls: RELOAD and SET against a
// stand-in context, failures counted, and two at once.
import { describe, expect, it, vi } from 'vitest';
import { ConfigError, loadConfig, type Config } from '../../../src/config/index.js';
import type { ProxyContext } from '../../../src/context.js';
import { LocalOperator } from '../../../src/control/operator.js';
import { createAuthQuery, createAuthThrottle, createParameterPolicy } from '../../../src/control/reload.js';
import { createLogger } from '../../../src/log/logger.js';

const log = createLogger('silent');

function config(overrides: Record<string, unknown> = {}): Config {
  return loadConfig({ env: {}, overrides: { databases: { app: { host: 'h1', dbname: 'app' } }, log_level: 'silent', ...overrides } });
}

function operator(loadConfigFn: () => Config = () => config({ default_pool_size: 9 })) {
  const running = config();
  const proxy = {
    config: running,
    log: createLogger('silent'),
    tls: { close: vi.fn() },
    authQuery: createAuthQuery(running, log),
    authThrottle: createAuthThrottle(running, log),
    parameters: createParameterPolicy(running),
    pools: { all: () => [][Symbol.iterator]() },
  };
  const shutdown = vi.fn();
  const op = new LocalOperator(proxy as unknown as ProxyContext, { loadConfig: loadConfigFn, shutdown }, log);
  return { op, proxy, shutdown };
}

describe('LocalOperator', () => {
  it('RELOAD swaps in the configuration it reads and counts it', async () => {
    const { op, proxy } = operator();
    expect(await op.run({ kind: 'reload' })).toEqual({ ok: true, warnings: [] });
    expect(proxy.config.default_pool_size).toBe(9);
    expect(op.reloads).toMatchObject({ ok: 1, failed: 0 });
  });

  it('a configuration that does not load keeps the running one and counts a failure', async () => {
    const { op, proxy } = operator(() => {
      throw new ConfigError(['app.yaml: default_pool_size: expected an integer >= 1, got 0']);
    });
    const before = proxy.config;
    expect(await op.run({ kind: 'reload' })).toEqual({ ok: false, error: expect.stringContaining('default_pool_size') });
    expect(proxy.config).toBe(before);
    expect(op.reloads).toMatchObject({ ok: 0, failed: 1 });
  });

  it('SET changes one setting; a bad value changes nothing', async () => {
    const { op, proxy } = operator();
    expect(await op.run({ kind: 'set', key: 'default_pool_size', value: '12' })).toMatchObject({ ok: true });
    expect(proxy.config.default_pool_size).toBe(12);
    expect(await op.run({ kind: 'set', key: 'default_pool_size', value: '-1' })).toMatchObject({ ok: false });
    expect(proxy.config.default_pool_size).toBe(12);
  });

  it('SHUTDOWN answers, then starts the shutdown', async () => {
    const { op, shutdown } = operator();
    expect(await op.run({ kind: 'shutdown', mode: 'wait_for_servers' })).toEqual({ ok: true, warnings: [] });
    await new Promise((resolve) => setImmediate(resolve));
    expect(shutdown).toHaveBeenCalledWith('wait_for_servers');
  });

  // Defect: LocalOperator.run does not serialize RELOAD and SET as ControlRelay does. Each builds its config from
  // proxy.config before awaiting prepareReload, so the later commit drops the earlier change (operator.ts, run()).
  it('two SETs from two consoles at once both take effect', async () => {
    const { op, proxy } = operator();
    await Promise.all([op.run({ kind: 'set', key: 'default_pool_size', value: '12' }), op.run({ kind: 'set', key: 'min_pool_size', value: '2' })]);
    expect(proxy.config.default_pool_size).toBe(12);
    expect(proxy.config.min_pool_size).toBe(2);
  });
});
