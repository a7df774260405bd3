// Environment overrides, as two layers over the YAML file: Bitnami's pgbouncer
// image variables (so a container setup moves over unchanged), then our own
// PG_INGRESS_<KEY>. Values stay strings here; the schema coerces and checks them.
import { readFileSync } from 'node:fs';
import { ConfigError, SCALAR_KEYS, closest } from './schema.js';

/** Raw YAML-level values plus where each came from (path key → env var name). */
export interface Layer {
  values: Record<string, unknown>;
  sources: Record<string, string>;
}

export type Env = Record<string, string | undefined>;

/** Joins a key path for `Layer.sources`; \x1f because database names may hold dots. */
export const pathKey = (...parts: readonly (string | number)[]): string => parts.join('\x1f');

export const PG_INGRESS_PREFIX = 'PG_INGRESS_';

/** PG_INGRESS_<KEY> for every scalar and list key. */
export const pgIngressVar = (key: string): string => PG_INGRESS_PREFIX + key.toUpperCase();

/** Bitnami variables that map one-to-one onto a key. Later rows win. */
export const BITNAMI_VARS: ReadonlyArray<readonly [env: string, key: string]> = [
  ['PGBOUNCER_PORT', 'listen_port'],
  // The image's old README says BIND_ADDRESS; its scripts read LISTEN_ADDRESS. Accept both.
  ['PGBOUNCER_BIND_ADDRESS', 'listen_addr'],
  ['PGBOUNCER_LISTEN_ADDRESS', 'listen_addr'],
  ['PGBOUNCER_AUTH_USER', 'auth_user'],
  ['PGBOUNCER_AUTH_QUERY', 'auth_query'],
  ['PGBOUNCER_POOL_MODE', 'pool_mode'],
  ['PGBOUNCER_DEFAULT_POOL_SIZE', 'default_pool_size'],
  ['PGBOUNCER_MIN_POOL_SIZE', 'min_pool_size'],
  ['PGBOUNCER_RESERVE_POOL_SIZE', 'reserve_pool_size'],
  ['PGBOUNCER_RESERVE_POOL_TIMEOUT', 'reserve_pool_timeout'],
  ['PGBOUNCER_MAX_CLIENT_CONN', 'max_client_conn'],
  ['PGBOUNCER_MAX_DB_CONNECTIONS', 'max_db_connections'],
  ['PGBOUNCER_CLIENT_TLS_SSLMODE', 'client_tls_sslmode'],
  ['PGBOUNCER_CLIENT_TLS_CERT_FILE', 'client_tls_cert_file'],
  ['PGBOUNCER_CLIENT_TLS_KEY_FILE', 'client_tls_key_file'],
  ['PGBOUNCER_SERVER_RESET_QUERY', 'server_reset_query'],
  ['PGBOUNCER_SERVER_LIFETIME', 'server_lifetime'],
  ['PGBOUNCER_SERVER_IDLE_TIMEOUT', 'server_idle_timeout'],
  ['PGBOUNCER_SERVER_CONNECT_TIMEOUT', 'server_connect_timeout'],
  ['PGBOUNCER_SERVER_LOGIN_RETRY', 'server_login_retry'],
  ['PGBOUNCER_QUERY_TIMEOUT', 'query_timeout'],
  ['PGBOUNCER_QUERY_WAIT_TIMEOUT', 'query_wait_timeout'],
  ['PGBOUNCER_CLIENT_IDLE_TIMEOUT', 'client_idle_timeout'],
  ['PGBOUNCER_CLIENT_LOGIN_TIMEOUT', 'client_login_timeout'],
  ['PGBOUNCER_TCP_KEEPALIVE', 'tcp_keepalive'],
  ['PGBOUNCER_TCP_KEEPIDLE', 'tcp_keepidle'],
  ['PGBOUNCER_IDLE_TRANSACTION_TIMEOUT', 'idle_transaction_timeout'],
  ['PGBOUNCER_MAX_PREPARED_STATEMENTS', 'max_prepared_statements'],
  ['PGBOUNCER_IGNORE_STARTUP_PARAMETERS', 'ignore_startup_parameters'],
  ['PGBOUNCER_STATS_USERS', 'stats_users'],
];

/** Reads a secret or DSN file, dropping the one newline editors and `echo` add. */
export function readValueFile(path: string): string {
  return readFileSync(path, 'utf8').replace(/\r?\n$/, '');
}

interface Got {
  value: string;
  source: string;
}

/**
 * A Bitnami variable as the image reads it: `<NAME>_FILE` (a mounted Secret)
 * wins over `<NAME>`, and an empty value counts as unset.
 */
function bitnamiGet(env: Env, name: string): Got | undefined {
  const file = env[`${name}_FILE`];
  if (file !== undefined && file !== '') {
    try {
      return { value: readValueFile(file), source: `${name}_FILE` };
    } catch (e) {
      const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw new ConfigError([`${name}_FILE: cannot read ${JSON.stringify(file)}: ${why}`]);
    }
  }
  const value = env[name];
  return value === undefined || value === '' ? undefined : { value, source: name };
}

const isYes = (v: string | undefined): boolean => v !== undefined && /^(yes|true|1)$/i.test(v.trim());

/** The Bitnami pgbouncer image's variables, mapped to our keys. */
export function bitnamiLayer(env: Env): Layer {
  const values: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  const set = (key: string, got: Got): void => {
    values[key] = got.value;
    sources[pathKey(key)] = got.source;
  };

  for (const [name, key] of BITNAMI_VARS) {
    const got = bitnamiGet(env, name);
    if (got) set(key, got);
  }

  // Server TLS is not implemented: refuse rather than silently downgrade to plaintext.
  const serverTls = bitnamiGet(env, 'PGBOUNCER_SERVER_TLS_SSLMODE');
  if (serverTls && serverTls.value.trim().toLowerCase() !== 'disable') {
    throw new ConfigError([
      `${serverTls.source}: TLS to servers is not supported; pg-ingress connects to PostgreSQL in plaintext inside the cluster (unset it or set disable)`,
    ]);
  }

  // The image writes POSTGRESQL_USERNAME/PASSWORD into userlist.txt; that is
  // where PgBouncer finds auth_user's password when the two names match.
  const authUser = bitnamiGet(env, 'PGBOUNCER_AUTH_USER')?.value;
  const pgUser = bitnamiGet(env, 'POSTGRESQL_USERNAME')?.value ?? 'postgres';
  const pgPassword = bitnamiGet(env, 'POSTGRESQL_PASSWORD');
  if (authUser !== undefined && authUser === pgUser && pgPassword) set('auth_password', pgPassword);

  const databases: Record<string, unknown> = {};
  const addDatabase = (name: string, entry: unknown, source: string): void => {
    databases[name] = entry;
    sources[pathKey('databases', name)] = source;
  };

  // The image always writes one entry: PGBOUNCER_DATABASE = host=POSTGRESQL_HOST …
  // We add it only when one of its variables is set, with the image's defaults.
  const dbVars = ['PGBOUNCER_DATABASE', 'POSTGRESQL_HOST', 'POSTGRESQL_PORT', 'POSTGRESQL_DATABASE'] as const;
  const got = Object.fromEntries(dbVars.map((n) => [n, bitnamiGet(env, n)]));
  if (dbVars.some((n) => got[n])) {
    const name = got.PGBOUNCER_DATABASE?.value ?? 'postgres';
    const entry: Record<string, string> = {
      host: got.POSTGRESQL_HOST?.value ?? 'postgresql',
      port: got.POSTGRESQL_PORT?.value ?? '5432',
    };
    if (got.POSTGRESQL_HOST) sources[pathKey('databases', name, 'host')] = got.POSTGRESQL_HOST.source;
    if (got.POSTGRESQL_PORT) sources[pathKey('databases', name, 'port')] = got.POSTGRESQL_PORT.source;
    if (name !== '*') {
      entry.dbname = got.POSTGRESQL_DATABASE?.value ?? name;
      if (got.POSTGRESQL_DATABASE) sources[pathKey('databases', name, 'dbname')] = got.POSTGRESQL_DATABASE.source;
    }
    if (isYes(env.PGBOUNCER_SET_DATABASE_USER)) {
      entry.user = pgUser; // refused at load, naming this variable: pg-ingress has no forced server user
      sources[pathKey('databases', name, 'user')] = 'PGBOUNCER_SET_DATABASE_USER';
    }
    addDatabase(name, entry, got.PGBOUNCER_DATABASE?.source ?? 'PGBOUNCER_DATABASE');
  }

  // PGBOUNCER_DSN_0, _1, …: "name=host=… port=…", split at the first '='.
  // Like the image, the scan stops at the first missing index.
  for (let i = 0; ; i++) {
    const dsn = bitnamiGet(env, `PGBOUNCER_DSN_${i}`);
    if (!dsn) break;
    const eq = dsn.value.indexOf('=');
    const name = eq < 0 ? '' : dsn.value.slice(0, eq).trim();
    if (name === '') {
      // The value is not quoted: a DSN may carry a password.
      throw new ConfigError([`${dsn.source}: expected "<database>=host=… port=… dbname=…"`]);
    }
    addDatabase(name, dsn.value.slice(eq + 1), dsn.source);
  }

  if (Object.keys(databases).length > 0) {
    values.databases = databases;
    sources[pathKey('databases')] = 'PGBOUNCER_DSN_*';
  }
  return { values, sources };
}

/** PG_INGRESS_<KEY> variables. An empty value counts as unset, as in Helm charts. */
export function pgIngressLayer(env: Env): Layer {
  const values: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  const known = new Map(SCALAR_KEYS.map((k) => [pgIngressVar(k), k]));
  const problems: string[] = [];

  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(PG_INGRESS_PREFIX)) continue;
    const key = known.get(name);
    if (key === undefined) {
      // Other PG_INGRESS_* variables may belong to other parts (the CLI);
      // only a near miss of one of ours is an error.
      const near = closest(name, [...known.keys()]);
      if (near) problems.push(`${name}: unknown variable (did you mean ${near}?)`);
      continue;
    }
    if (value === undefined || value === '') continue;
    values[key] = value;
    sources[pathKey(key)] = name;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { values, sources };
}
