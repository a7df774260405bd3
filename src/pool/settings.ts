// PoolSettings from the configuration: a database entry's and a user's own
// values over the global ones, and PgBouncer's seconds as milliseconds, here once.
import type { Config, DatabaseEntry, PoolMode } from '../config/index.js';
import { HostRotation } from './hosts.js';
import type { PoolSettings } from './pool.js';
import type { ServerSetup } from './server.js';
import { serverTlsSettings } from './server-tls.js';

export function poolSettings(config: Config, entry: DatabaseEntry, user: string, mode: PoolMode): PoolSettings {
  const ms = (seconds: number): number => Math.round(seconds * 1000);
  const userEntry = config.users[user];
  return {
    mode,
    size: entry.pool_size ?? userEntry?.pool_size ?? config.default_pool_size,
    minSize: entry.min_pool_size ?? config.min_pool_size,
    reserveSize: entry.reserve_pool_size ?? config.reserve_pool_size,
    reserveTimeoutMs: ms(config.reserve_pool_timeout),
    connectTimeoutMs: ms(config.server_connect_timeout),
    loginRetryMs: ms(config.server_login_retry),
    waitTimeoutMs: ms(config.query_wait_timeout),
    lifetimeMs: ms(entry.server_lifetime ?? config.server_lifetime),
    idleTimeoutMs: ms(config.server_idle_timeout),
    checkQuery: config.server_check_query,
    checkDelayMs: ms(config.server_check_delay),
    resetQuery: config.server_reset_query,
    maxPrepared: mode === 'session' ? 0 : config.max_prepared_statements,
    unusedTimeoutMs: ms(config.autodb_idle_timeout),
    checkSuperuserMembership: !config.allow_superuser,
    maxDbConnections: entry.max_db_connections ?? config.max_db_connections,
    maxUserConnections: userEntry?.max_user_connections ?? config.max_user_connections,
    server: serverSetup(config, entry),
  };
}

/** TLS, hosts, startup parameters and connect_query of one database's servers. */
export function serverSetup(config: Config, entry: DatabaseEntry): ServerSetup {
  // As PgBouncer's startup packet: the database's values, lower-case names (GUC names are case-insensitive).
  const startupParameters: Record<string, string> = {};
  if (entry.client_encoding !== null) startupParameters.client_encoding = entry.client_encoding;
  if (entry.datestyle !== null) startupParameters.datestyle = entry.datestyle;
  if (entry.timezone !== null) startupParameters.timezone = entry.timezone;
  return {
    tls: serverTlsSettings(config),
    hosts: new HostRotation(entry.ports, entry.load_balance_hosts),
    startupParameters,
    connectQuery: entry.connect_query,
  };
}
