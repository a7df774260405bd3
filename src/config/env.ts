// Environment overrides, as two layers over the YAML file: Bitnami's pgbouncer
// image variables (so a container setup moves over unchanged), then our own
// PG_INGRESS_<KEY>. Values stay strings here; the schema coerces and checks them.
import { readFileSync } from 'node:fs';
import { NO_FORCED_LOGIN } from './dsn.js';
import { ConfigError, SCALAR_KEYS, closest } from './schema.js';

/** Raw YAML-level values plus where each came from (path key → env var name). */
export interface Layer {
  values: Record<string, unknown>;
  sources: Record<string, string>;
  /** Warnings to log once (Config.notices). */
  notices?: readonly string[];
}

export type Env = Record<string, string | undefined>;

/** Joins a key path for `Layer.sources`; \x1f because database names may hold dots. */
export const pathKey = (...parts: readonly (string | number)[]): string => parts.join('\x1f');

export const PG_INGRESS_PREFIX = 'PG_INGRESS_';

/** PG_INGRESS_<KEY> for every scalar and list key. */
export const pgIngressVar = (key: string): string => PG_INGRESS_PREFIX + key.toUpperCase();

// ---- the Bitnami pgbouncer image ---------------------------------------
// Its variables as bitnami/pgbouncer's pgbouncer-env.sh and libpgbouncer.sh read
// them. docs/configuration.md's table lists each with `target` (a test keeps
// the two equal).

/** What a Bitnami variable does here. */
export type BitnamiHandling =
  /** The value, as is, for this top-level key: one of ours, or a PgBouncer setting pgbouncer-settings.ts decides on. */
  | { kind: 'key'; key: string }
  /** Read by bitnamiLayer's own code: part of a database entry, the auth user, … */
  | { kind: 'composed' }
  /** The image's own machinery: a warning saying why, unless the value asks for nothing (`inert`, the image's default). */
  | { kind: 'warned'; why: string; inert: readonly string[] };

export interface BitnamiVariable {
  name: string;
  /** What the docs table shows it becomes (in backticks there): a key, a key path, or — (warned). */
  target: string;
  handling: BitnamiHandling;
}

const key = (name: string, k: string): BitnamiVariable => ({ name, target: k, handling: { kind: 'key', key: k } });
const composed = (name: string, target: string): BitnamiVariable => ({ name, target, handling: { kind: 'composed' } });
const warned = (name: string, why: string, inert: readonly string[] = []): BitnamiVariable => ({ name, target: '— (warned)', handling: { kind: 'warned', why, inert } });

const NO_SOCKET = 'pg-ingress listens on TCP only, no Unix socket';
const NO_INIT = "the image's start-up script; pg-ingress starts at once and connects to servers when clients need them (server_login_retry between failed attempts)";
const ENTRY = 'databases.<PGBOUNCER_DATABASE>';

/** Every variable of the image, in its pgbouncer-env.sh order, plus older spellings. Later rows win. */
export const BITNAMI_VARIABLES: readonly BitnamiVariable[] = [
  warned('PGBOUNCER_LOG_FILE', 'logs go to stdout (JSON, or text on a terminal); no log file is written'),
  composed('PGBOUNCER_DATABASE', ENTRY),
  key('PGBOUNCER_PORT', 'listen_port'),
  // The image's old README says BIND_ADDRESS; its scripts read LISTEN_ADDRESS, which wins.
  key('PGBOUNCER_BIND_ADDRESS', 'listen_addr'),
  key('PGBOUNCER_LISTEN_ADDRESS', 'listen_addr'),
  key('PGBOUNCER_AUTH_USER', 'auth_user'),
  key('PGBOUNCER_AUTH_QUERY', 'auth_query'),
  key('PGBOUNCER_AUTH_TYPE', 'auth_type'),
  key('PGBOUNCER_AUTH_HBA_FILE', 'auth_hba_file'),
  key('PGBOUNCER_AUTH_IDENT_FILE', 'auth_ident_file'),
  key('PGBOUNCER_STATS_USERS', 'stats_users'),
  key('PGBOUNCER_POOL_MODE', 'pool_mode'),
  warned('PGBOUNCER_INIT_SLEEP_TIME', NO_INIT, ['10']),
  key('PGBOUNCER_SERVER_FAST_CLOSE', 'server_fast_close'),
  warned('PGBOUNCER_INIT_MAX_RETRIES', NO_INIT, ['10']),
  key('PGBOUNCER_QUERY_WAIT_TIMEOUT', 'query_wait_timeout'),
  key('PGBOUNCER_MAX_CLIENT_CONN', 'max_client_conn'),
  key('PGBOUNCER_MAX_DB_CONNECTIONS', 'max_db_connections'),
  key('PGBOUNCER_IDLE_TRANSACTION_TIMEOUT', 'idle_transaction_timeout'),
  key('PGBOUNCER_SERVER_IDLE_TIMEOUT', 'server_idle_timeout'),
  key('PGBOUNCER_SERVER_RESET_QUERY', 'server_reset_query'),
  key('PGBOUNCER_DEFAULT_POOL_SIZE', 'default_pool_size'),
  key('PGBOUNCER_MIN_POOL_SIZE', 'min_pool_size'),
  key('PGBOUNCER_RESERVE_POOL_SIZE', 'reserve_pool_size'),
  key('PGBOUNCER_RESERVE_POOL_TIMEOUT', 'reserve_pool_timeout'),
  key('PGBOUNCER_IGNORE_STARTUP_PARAMETERS', 'ignore_startup_parameters'),
  key('PGBOUNCER_STATS_PERIOD', 'stats_period'),
  key('PGBOUNCER_MAX_PREPARED_STATEMENTS', 'max_prepared_statements'),
  warned('PGBOUNCER_EXTRA_FLAGS', 'PgBouncer command-line flags; for --verbose set PG_INGRESS_LOG_LEVEL=debug'),
  warned('PGBOUNCER_EXTRA_ARGS', 'the older name of PGBOUNCER_EXTRA_FLAGS; for --verbose set PG_INGRESS_LOG_LEVEL=debug'),
  warned('PGBOUNCER_FAIL_ON_INVALID_DSN_FILE', 'an unreadable *_FILE is always an error in pg-ingress', ['true', 'yes', '1']),
  key('PGBOUNCER_SERVER_ROUND_ROBIN', 'server_round_robin'),
  key('PGBOUNCER_APPLICATION_NAME_ADD_HOST', 'application_name_add_host'),
  key('PGBOUNCER_CLIENT_TLS_SSLMODE', 'client_tls_sslmode'),
  key('PGBOUNCER_CLIENT_TLS_CA_FILE', 'client_tls_ca_file'),
  key('PGBOUNCER_CLIENT_TLS_CERT_FILE', 'client_tls_cert_file'),
  key('PGBOUNCER_CLIENT_TLS_KEY_FILE', 'client_tls_key_file'),
  key('PGBOUNCER_CLIENT_TLS_CIPHERS', 'client_tls_ciphers'),
  key('PGBOUNCER_SERVER_TLS_SSLMODE', 'server_tls_sslmode'),
  key('PGBOUNCER_SERVER_TLS_CA_FILE', 'server_tls_ca_file'),
  key('PGBOUNCER_SERVER_TLS_CERT_FILE', 'server_tls_cert_file'),
  key('PGBOUNCER_SERVER_TLS_KEY_FILE', 'server_tls_key_file'),
  key('PGBOUNCER_SERVER_TLS_PROTOCOLS', 'server_tls_protocols'),
  key('PGBOUNCER_SERVER_TLS_CIPHERS', 'server_tls_ciphers'),
  key('PGBOUNCER_LOG_CONNECTIONS', 'log_connections'),
  key('PGBOUNCER_LOG_DISCONNECTIONS', 'log_disconnections'),
  key('PGBOUNCER_LOG_POOLER_ERRORS', 'log_pooler_errors'),
  key('PGBOUNCER_LOG_STATS', 'log_stats'),
  key('PGBOUNCER_SERVER_LIFETIME', 'server_lifetime'),
  key('PGBOUNCER_SERVER_CONNECT_TIMEOUT', 'server_connect_timeout'),
  key('PGBOUNCER_SERVER_LOGIN_RETRY', 'server_login_retry'),
  key('PGBOUNCER_CLIENT_LOGIN_TIMEOUT', 'client_login_timeout'),
  key('PGBOUNCER_AUTODB_IDLE_TIMEOUT', 'autodb_idle_timeout'),
  key('PGBOUNCER_QUERY_TIMEOUT', 'query_timeout'),
  key('PGBOUNCER_CLIENT_IDLE_TIMEOUT', 'client_idle_timeout'),
  // Not in the image; read under PgBouncer's names since the first version of this layer.
  key('PGBOUNCER_TCP_KEEPALIVE', 'tcp_keepalive'),
  key('PGBOUNCER_TCP_KEEPIDLE', 'tcp_keepidle'),
  composed('POSTGRESQL_USERNAME', 'auth_user, admin_users'),
  composed('POSTGRESQL_PASSWORD', 'auth_password'),
  composed('POSTGRESQL_DATABASE', `${ENTRY}.dbname`),
  composed('POSTGRESQL_HOST', `${ENTRY}.host`),
  composed('POSTGRESQL_PORT', `${ENTRY}.port`),
  composed('PGBOUNCER_SET_DATABASE_USER', `${ENTRY}.user`),
  composed('PGBOUNCER_SET_DATABASE_PASSWORD', `${ENTRY}.password`),
  composed('PGBOUNCER_USERLIST', '— (warned)'),
  composed('PGBOUNCER_USERLIST_FILE', 'auth_file'),
  composed('PGBOUNCER_CONNECT_QUERY', `${ENTRY}.connect_query`),
  warned('PGBOUNCER_FORCE_INITSCRIPTS', 'no /docker-entrypoint-initdb.d scripts are run', ['false', 'no', '0']),
  warned('PGBOUNCER_SOCKET_DIR', NO_SOCKET, ['/tmp/', '/tmp']),
  warned('PGBOUNCER_SOCKET_MODE', NO_SOCKET, ['0777', '777']),
  warned('PGBOUNCER_SOCKET_GROUP', NO_SOCKET),
  warned('PGBOUNCER_DAEMON_USER', 'pg-ingress runs as the container user; it does not switch users', ['pgbouncer']),
  warned('PGBOUNCER_DAEMON_GROUP', 'pg-ingress runs as the container user; it does not switch users', ['pgbouncer']),
  composed('PGBOUNCER_DSN_0, PGBOUNCER_DSN_1, …', 'databases.<name>'),
];

/** Bitnami variables that set one of our keys as they are. */
export const BITNAMI_VARS: ReadonlyArray<readonly [env: string, key: string]> = BITNAMI_VARIABLES.flatMap((v) =>
  v.handling.kind === 'key' && SCALAR_KEYS.includes(v.handling.key) ? [[v.name, v.handling.key] as const] : [],
);

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
 * wins over `<NAME>`, and an empty value counts as unset. An unreadable file is
 * a problem (the image only warns, and would start without the value).
 */
function bitnamiGet(env: Env, name: string, problems: string[]): Got | undefined {
  const file = env[`${name}_FILE`];
  if (file !== undefined && file !== '') {
    try {
      return { value: readValueFile(file), source: `${name}_FILE` };
    } catch (e) {
      const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      problems.push(`${name}_FILE: cannot read ${JSON.stringify(file)}: ${why}`);
      return undefined;
    }
  }
  const value = env[name];
  return value === undefined || value === '' ? undefined : { value, source: name };
}

const isYes = (v: string | undefined): boolean => v !== undefined && /^(yes|true|1)$/i.test(v.trim());

/**
 * Kubernetes service links: a Service named pgbouncer or postgresql sets PGBOUNCER_PORT or
 * POSTGRESQL_PORT to tcp://ip:port in every pod started beside it. Nobody means that as a port,
 * and taken as set, POSTGRESQL_PORT would add the image's entry in place of the file's databases.
 */
const SERVICE_LINK = /^(tcp|udp|sctp):\/\//i;
const SERVICE_LINK_VARS = new Set(['PGBOUNCER_PORT', 'POSTGRESQL_PORT']);

/** The Bitnami pgbouncer image's variables, mapped to our keys. */
export function bitnamiLayer(env: Env): Layer {
  const values: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  const notices: string[] = [];
  const problems: string[] = [];
  // Read once each: a file is read (and an unreadable one reported) once.
  const read = new Map<string, Got | undefined>();
  const get = (name: string): Got | undefined => {
    if (!read.has(name)) {
      let got = bitnamiGet(env, name, problems);
      if (got && SERVICE_LINK_VARS.has(name) && SERVICE_LINK.test(got.value)) {
        const service = name.split('_')[0]!.toLowerCase();
        notices.push(`${got.source}: ignored: ${JSON.stringify(got.value)} is what Kubernetes sets beside a Service named ${service} (service links); set ${name} to a port number to use it, or enableServiceLinks: false in the pod spec`);
        got = undefined;
      }
      read.set(name, got);
    }
    return read.get(name);
  };
  const set = (k: string, got: Got): void => {
    values[k] = got.value;
    sources[pathKey(k)] = got.source;
  };

  for (const { name, handling: h } of BITNAMI_VARIABLES) {
    if (h.kind === 'composed') continue;
    const got = get(name);
    if (!got) continue;
    if (h.kind === 'key') set(h.key, got);
    else if (!h.inert.includes(got.value.trim().toLowerCase())) notices.push(`${got.source}: accepted, has no effect in pg-ingress: ${h.why}`);
  }
  // A setting's name with the image's prefix that the image does not have (PGBOUNCER_MAX_USER_CONNECTIONS): say which variable is.
  const ours = new Set(BITNAMI_VARIABLES.map((v) => v.name));
  for (const name of Object.keys(env)) {
    const k = name.startsWith('PGBOUNCER_') ? name.slice('PGBOUNCER_'.length).toLowerCase() : '';
    if (k !== '' && !ours.has(name) && env[name] !== '' && SCALAR_KEYS.includes(k)) {
      notices.push(`${name}: not read: the Bitnami image has no such variable; set ${pgIngressVar(k)} instead`);
    }
  }

  // The image's userlist.txt holds POSTGRESQL_USERNAME's password: the one login it
  // can make upstream. In pg-ingress that is auth_user, unless PGBOUNCER_AUTH_USER names another.
  const authUser = get('PGBOUNCER_AUTH_USER');
  const pgUser = get('POSTGRESQL_USERNAME');
  const pgPassword = get('POSTGRESQL_PASSWORD');
  if (!authUser && (pgUser || pgPassword)) set('auth_user', pgUser ?? { value: 'postgres', source: pgPassword!.source });
  if (pgPassword && (!authUser || authUser.value === (pgUser?.value ?? 'postgres'))) set('auth_password', pgPassword);
  // The image makes POSTGRESQL_USERNAME the console's admin (admin_users).
  if (pgUser) set('admin_users', pgUser);

  // PGBOUNCER_USERLIST_FILE is the image's extra userlist: PgBouncer's auth_file, which pg-ingress reads.
  const userlistFile = env.PGBOUNCER_USERLIST_FILE;
  if (userlistFile !== undefined && userlistFile !== '') set('auth_file', { value: userlistFile, source: 'PGBOUNCER_USERLIST_FILE' });
  else if (env.PGBOUNCER_USERLIST !== undefined && env.PGBOUNCER_USERLIST !== '') {
    notices.push(
      'PGBOUNCER_USERLIST: accepted, has no effect in pg-ingress: an inline userlist is not read; users are looked up with auth_query, or put the lines in a file and set PGBOUNCER_USERLIST_FILE (auth_file) to it',
    );
  }

  const databases: Record<string, unknown> = {};
  const addDatabase = (name: string, entry: unknown, source: string): void => {
    databases[name] = entry;
    sources[pathKey('databases', name)] = source;
  };

  // The image always writes one entry: PGBOUNCER_DATABASE = host=POSTGRESQL_HOST …
  // We add it only when one of its variables is set, with the image's defaults.
  const dbVars = ['PGBOUNCER_DATABASE', 'POSTGRESQL_HOST', 'POSTGRESQL_PORT', 'POSTGRESQL_DATABASE', 'PGBOUNCER_CONNECT_QUERY'] as const;
  const got = Object.fromEntries(dbVars.map((n) => [n, get(n)]));
  if (dbVars.some((n) => got[n])) {
    const name = got.PGBOUNCER_DATABASE?.value ?? 'postgres';
    const entry: Record<string, string> = {};
    const field = (k: string, v: Got | undefined, fallback: string): void => {
      entry[k] = v?.value ?? fallback;
      if (v) sources[pathKey('databases', name, k)] = v.source;
    };
    field('host', got.POSTGRESQL_HOST, 'postgresql');
    field('port', got.POSTGRESQL_PORT, '5432');
    if (name !== '*') field('dbname', got.POSTGRESQL_DATABASE, name); // '*' passes the requested name on
    if (got.PGBOUNCER_CONNECT_QUERY) field('connect_query', got.PGBOUNCER_CONNECT_QUERY, '');
    if (isYes(env.PGBOUNCER_SET_DATABASE_USER)) {
      entry.user = pgUser?.value ?? 'postgres'; // refused at load, naming this variable: pg-ingress has no forced server user
      sources[pathKey('databases', name, 'user')] = 'PGBOUNCER_SET_DATABASE_USER';
    }
    addDatabase(name, entry, got.PGBOUNCER_DATABASE?.source ?? 'PGBOUNCER_DATABASE');
  }
  if (isYes(env.PGBOUNCER_SET_DATABASE_PASSWORD)) {
    problems.push(`PGBOUNCER_SET_DATABASE_PASSWORD: a stored server password is not supported: ${NO_FORCED_LOGIN}; unset it`);
  }

  // PGBOUNCER_DSN_0, _1, …: "name=host=… port=…", split at the first '='.
  // Like the image, the scan stops at the first missing index.
  for (let i = 0; ; i++) {
    const dsn = get(`PGBOUNCER_DSN_${i}`);
    if (!dsn) break;
    const eq = dsn.value.indexOf('=');
    const name = eq < 0 ? '' : dsn.value.slice(0, eq).trim();
    if (name === '') {
      // The value is not quoted: a DSN may carry a password.
      problems.push(`${dsn.source}: expected "<database>=host=… port=… dbname=…"`);
      continue;
    }
    addDatabase(name, dsn.value.slice(eq + 1), dsn.source);
  }

  if (problems.length > 0) throw new ConfigError(problems);
  if (Object.keys(databases).length > 0) {
    values.databases = databases;
    sources[pathKey('databases')] = 'PGBOUNCER_DSN_*';
  }
  return { values, sources, notices };
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
