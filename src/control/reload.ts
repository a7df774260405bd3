// A reload in this process, in two steps so that several workers switch
// together or not at all: prepare() builds what the new configuration needs and
// can fail (a certificate that does not load); commit() cannot fail and swaps it
// in: settings at once, pools resized, servers of a changed database closed when
// next free (PgBouncer's close_needed), a removed database's clients left to finish.
import { AuthQuery } from '../auth/auth-query.js';
import { AuthThrottle } from '../auth/throttle.js';
import { ParameterPolicy } from '../client/parameters.js';
import { route } from '../client/router.js';
import { configSchema, type Config } from '../config/index.js';
import { freezeConfig } from '../config/freeze.js';
import { SCALAR_KEYS, SECRET_KEYS } from '../config/schema.js';
import type { ProxyContext } from '../context.js';
import { setLogLevel, type Logger } from '../log/logger.js';
import { poolSettings } from '../pool/settings.js';
import { TlsContextProvider } from '../tls/context.js';

/** Keys that take effect only at start: the sockets are bound and the processes forked. */
export const RESTART_ONLY_KEYS: readonly string[] = ['listen_addr', 'listen_port', 'listen_reuse_port', 'workers', 'metrics_listen_addr', 'metrics_port', 'metrics_auth_token', 'log_format'];

/** Database-entry keys that size or limit a pool; any other change means new server connections. */
const POOL_SIZING_KEYS = new Set(['name', 'pool_mode', 'pool_size', 'min_pool_size', 'reserve_pool_size', 'max_db_connections', 'max_db_client_connections']);

const AUTH_QUERY_KEYS = ['auth_user', 'auth_password', 'auth_query', 'auth_cache_ttl', 'auth_cache_size', 'auth_max_concurrent_lookups', 'server_connect_timeout'] as const;
const THROTTLE_KEYS = ['auth_failure_limit', 'auth_failure_window', 'auth_failure_block'] as const;
const PARAMETER_KEYS = ['track_extra_parameters', 'ignore_startup_parameters'] as const;
const CLIENT_TLS_KEYS = ['client_tls_cert_file', 'client_tls_key_file', 'client_tls_protocols'] as const;

/** How long a replaced auth_query lookup pool may finish the lookups it has before it is closed. */
const RETIRED_LOOKUPS_GRACE_MS = 60_000;

export interface PreparedReload {
  /** Swaps the new configuration in; returns the warnings to log (restart-only keys that changed). */
  commit(): string[];
  /** Drops what prepare() built. */
  abort(): void;
}

/** The restart-only keys whose value differs (they keep their running value). */
export function restartOnlyChanges(running: Config, next: Config): string[] {
  return RESTART_ONLY_KEYS.filter((k) => k in next && !same(running[k as keyof Config], next[k as keyof Config]));
}

/** `next`, but with the running values of the restart-only keys (so SHOW CONFIG tells the truth), and a warning for each that differs. */
export function keepRestartOnly(running: Config, next: Config): { config: Config; warnings: string[] } {
  const warnings = restartOnlyChanges(running, next).map((k) => `${k} changed; it takes effect only after a restart`);
  const kept = Object.fromEntries(RESTART_ONLY_KEYS.filter((k) => k in running).map((k) => [k, running[k as keyof Config]]));
  return { config: freezeConfig({ ...next, ...kept } as Config), warnings };
}

/** Builds what `next` needs; throws an Error naming what failed (the running configuration stays). */
export async function prepareReload(proxy: ProxyContext, next: Config): Promise<PreparedReload> {
  const running = proxy.config;
  const changed = (keys: readonly string[]): boolean => keys.some((k) => !same(running[k as keyof Config], next[k as keyof Config]));
  // Certificates are read again even when the paths are the same: a reload is how an operator says "new files".
  const tls = next.client_tls_cert_file !== null || changed(CLIENT_TLS_KEYS) ? await TlsContextProvider.create(next, proxy.log) : null;
  let done = false;
  return {
    abort() {
      if (done) return;
      done = true;
      tls?.close();
    },
    commit() {
      if (done) return [];
      done = true;
      const { config, warnings } = keepRestartOnly(running, next);
      proxy.config = config;
      setLogLevel(proxy.log, config.log_level);
      if (tls) {
        const old = proxy.tls;
        proxy.tls = tls;
        old.close();
      }
      if (changed(AUTH_QUERY_KEYS)) {
        const old = proxy.authQuery;
        proxy.authQuery = createAuthQuery(config, proxy.log);
        void closeWhenIdle(old);
      }
      if (changed(THROTTLE_KEYS)) proxy.authThrottle = createAuthThrottle(config, proxy.log);
      if (changed(PARAMETER_KEYS)) proxy.parameters = createParameterPolicy(config);
      reconfigurePools(proxy, running, config);
      return warnings;
    },
  };
}

/** Every pool gets its new settings; a database whose server connection changed gets new servers. */
function reconfigurePools(proxy: ProxyContext, running: Config, next: Config): void {
  const serverTls = (c: Config): string => JSON.stringify(Object.entries(c).filter(([k]) => k.startsWith('server_tls_')));
  const tlsChanged = serverTls(running) !== serverTls(next);
  for (const pool of proxy.pools.all()) {
    const target = route(next, pool.database);
    if (!target) {
      pool.retire(); // removed: its clients finish, it keeps no server, then goes unused and is dropped
      continue;
    }
    const user = pool.address.user;
    const before = route(running, pool.database);
    pool.reconfigure(poolSettings(next, target.entry, user, next.users[user]?.pool_mode ?? target.poolMode), { ...pool.address, host: target.host, port: target.port, dbname: target.dbname });
    if (tlsChanged || !before || connectionOf(before.entry) !== connectionOf(target.entry)) pool.reconnect();
  }
}

/** The parts of a database entry that shape its server connections. */
function connectionOf(entry: object): string {
  return JSON.stringify(Object.entries(entry).filter(([k]) => !POOL_SIZING_KEYS.has(k)));
}

/** A key the console's SET may change (SHOW CONFIG's changeable): a reloadable scalar that is no secret and no file. */
export function isSettable(key: string): boolean {
  return SCALAR_KEYS.includes(key) && !key.endsWith('_file') && !SECRET_KEYS.has(key) && !RESTART_ONLY_KEYS.includes(key) && !DERIVED_FROM.has(key);
}

/** Keys loadConfig derives other values from (auth_user's password may come from auth_file): only a reload reads them. */
const DERIVED_FROM = new Set(['notices', 'auth_user', 'auth_file']);

/** `config` with one setting changed (the console's SET), validated as the file's value would be; or why not. */
export function withSetting(config: Config, key: string, value: string): Config | { error: string } {
  if (!SCALAR_KEYS.includes(key) || key.endsWith('_file') || key === 'notices') return { error: `unknown setting "${key}", or one SET cannot change (see SHOW CONFIG)` };
  if (DERIVED_FROM.has(key)) return { error: `${key} changes what else the configuration means (auth_user's password may come from auth_file): set it in the file, then RELOAD` };
  if (SECRET_KEYS.has(key)) return { error: `${key} is a secret: set it in the file or the environment, then RELOAD` };
  if (RESTART_ONLY_KEYS.includes(key)) return { error: `${key} takes effect only at start` };
  const leaf = (configSchema.shape as Record<string, { safeParse(v: unknown): { success: true; data: unknown } | { success: false; error: { issues: { message: string }[] } } }>)[key]!;
  const parsed = leaf.safeParse(value);
  if (!parsed.success) return { error: `${key}: ${parsed.error.issues.map((i) => i.message).join('; ')}` };
  return freezeConfig({ ...config, [key]: parsed.data });
}

export function createAuthQuery(config: Config, log: Logger): AuthQuery {
  return new AuthQuery(
    {
      user: config.auth_user,
      password: config.auth_password,
      query: config.auth_query,
      cacheTtlMs: config.auth_cache_ttl * 1000,
      cacheSize: config.auth_cache_size,
      maxConcurrentLookups: config.auth_max_concurrent_lookups,
      connectTimeoutMs: config.server_connect_timeout * 1000,
    },
    log.child({ component: 'auth_query' }),
  );
}

export function createAuthThrottle(config: Config, log: Logger): AuthThrottle {
  return new AuthThrottle(
    { limit: config.auth_failure_limit, windowMs: config.auth_failure_window * 1000, blockMs: config.auth_failure_block * 1000 },
    log.child({ component: 'auth_throttle' }),
  );
}

export function createParameterPolicy(config: Config): ParameterPolicy {
  return new ParameterPolicy(config.track_extra_parameters, config.ignore_startup_parameters);
}

/** A replaced lookup pool finishes the lookups it has (logins mid-way hold it), then closes. */
async function closeWhenIdle(old: AuthQuery): Promise<void> {
  const until = Date.now() + RETIRED_LOOKUPS_GRACE_MS;
  for (;;) {
    const u = old.usage;
    if ((u.running === 0 && u.waiting === 0 && u.inflight === 0) || Date.now() >= until) break;
    await new Promise((resolve) => setTimeout(resolve, 100).unref());
  }
  await old.close();
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
