// PoolSettings from the configuration: PgBouncer's seconds become milliseconds once, here.
import type { Config, PoolMode } from '../config/index.js';
import type { PoolSettings } from './pool.js';

export function poolSettings(config: Config, size: number, mode: PoolMode): PoolSettings {
  const ms = (seconds: number): number => Math.round(seconds * 1000);
  return {
    mode,
    size,
    minSize: config.min_pool_size,
    reserveSize: config.reserve_pool_size,
    reserveTimeoutMs: ms(config.reserve_pool_timeout),
    connectTimeoutMs: ms(config.server_connect_timeout),
    loginRetryMs: ms(config.server_login_retry),
    waitTimeoutMs: ms(config.query_wait_timeout),
    lifetimeMs: ms(config.server_lifetime),
    idleTimeoutMs: ms(config.server_idle_timeout),
    checkQuery: config.server_check_query,
    checkDelayMs: ms(config.server_check_delay),
    resetQuery: config.server_reset_query,
    maxPrepared: mode === 'session' ? 0 : config.max_prepared_statements,
    unusedTimeoutMs: ms(config.autodb_idle_timeout),
    checkSuperuserMembership: !config.allow_superuser,
  };
}
