// Every configuration key, its type and its default, as one zod schema.
// Leaves coerce strings (env vars and DSN values are strings) and write their
// own messages, which quote the offending value unless it is a secret.
import * as z from 'zod';
import { DSN_KEYS, DsnError, parseDsn } from './dsn.js';

export type PoolMode = 'session' | 'transaction' | 'statement';
export type ClientSslMode = 'disable' | 'allow' | 'prefer' | 'require';
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
export type TlsProtocol = 'tlsv1.2' | 'tlsv1.3';
export type ServerSslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';
export type ServerTlsProtocol = 'tlsv1.0' | 'tlsv1.1' | 'tlsv1.2' | 'tlsv1.3';
export type LoadBalanceHosts = 'disable' | 'round-robin';

export interface DatabaseEntry {
  name: string; // map key; '*' is the fallback entry
  host: string; // may contain '{db}'; a comma-separated list is tried as load_balance_hosts says
  port: number; // default 5432; the first of `ports`
  ports: readonly number[]; // one port for every host, or one per host
  dbname: string | null; // null => the requested database name
  user: null; // PgBouncer's forced server user: refused at load (NO_FORCED_LOGIN), so always the client's own
  pool_mode: PoolMode | null; // null => global/user setting
  pool_size: number | null; // null => default_pool_size
  min_pool_size: number | null; // null => global
  reserve_pool_size: number | null; // null => global
  max_db_connections: number | null; // null => global
  max_db_client_connections: number | null; // null => global
  auth_dbname: string | null; // null => global auth_dbname
  auth_user: string | null; // null => global auth_user
  auth_query: string | null; // null => global auth_query
  connect_query: string | null; // run once on each new server connection
  client_encoding: string | null; // startup parameters sent to the server
  datestyle: string | null;
  timezone: string | null;
  server_lifetime: number | null; // null => global
  load_balance_hosts: LoadBalanceHosts;
}
export interface UserEntry {
  name: string;
  pool_mode: PoolMode | null;
  pool_size: number | null;
  max_user_connections: number | null;
  max_user_client_connections: number | null;
}
export interface Config {
  config_file: string | null;
  listen_addr: string;
  listen_port: number;
  listen_reuse_port: 'auto' | 'off';
  client_tls_sslmode: ClientSslMode;
  client_tls_cert_file: string | null;
  client_tls_key_file: string | null;
  client_tls_protocols: TlsProtocol;
  server_tls_sslmode: ServerSslMode;
  server_tls_ca_file: string | null;
  server_tls_cert_file: string | null;
  server_tls_key_file: string | null;
  server_tls_protocols: readonly ServerTlsProtocol[];
  server_tls_ciphers: string;
  auth_user: string;
  auth_password: string | null;
  auth_query: string;
  auth_dbname: string | null;
  auth_file: string | null; // PgBouncer's userlist.txt
  /** auth_file's entries, user → plaintext password, md5 hash or SCRAM verifier; {} without auth_file. */
  auth_file_passwords: Readonly<Record<string, string>>;
  auth_cache_ttl: number;
  auth_cache_size: number;
  auth_max_concurrent_lookups: number;
  auth_failure_limit: number; // 0 = no throttling
  auth_failure_window: number;
  auth_failure_block: number;
  allow_superuser: boolean;
  pool_mode: PoolMode;
  default_pool_size: number;
  min_pool_size: number;
  reserve_pool_size: number;
  reserve_pool_timeout: number;
  max_client_conn: number;
  max_db_connections: number;
  max_user_connections: number;
  max_db_client_connections: number; // 0 = none
  max_user_client_connections: number; // 0 = none
  server_reset_query: string;
  server_reset_query_always: boolean;
  server_check_query: string;
  server_check_delay: number;
  server_lifetime: number;
  server_idle_timeout: number;
  server_connect_timeout: number;
  server_login_retry: number;
  query_timeout: number;
  query_wait_timeout: number;
  client_idle_timeout: number;
  client_login_timeout: number;
  shutdown_timeout: number;
  max_pending_logins: number; // 0 = half of max_client_conn
  tcp_keepalive: boolean;
  tcp_keepidle: number;
  idle_transaction_timeout: number;
  max_prepared_statements: number;
  max_client_prepared_statements: number;
  max_client_prepared_bytes: number;
  autodb_idle_timeout: number;
  ignore_startup_parameters: string[];
  track_extra_parameters: string[];
  max_packet_size: number;
  workers: number; // 0 = one per CPU
  metrics_listen_addr: string;
  metrics_port: number | null; // null = no metrics/health HTTP server
  metrics_auth_token: string | null; // bearer token /metrics requires (from the key or its _file); null = open
  admin_users: string[];
  stats_users: string[];
  log_level: LogLevel;
  log_format: 'text' | 'json' | 'auto'; // auto: text when stdout is a terminal, else JSON
  log_connections: boolean;
  log_disconnections: boolean;
  log_pooler_errors: boolean;
  log_stats: boolean;
  stats_period: number; // seconds
  databases: Readonly<Record<string, DatabaseEntry>>;
  users: Readonly<Record<string, UserEntry>>;
  /** Warnings from loading (settings accepted without effect, auth_file remarks), to log once. */
  notices: readonly string[];
}

/** Invalid configuration. Each problem names its source (file or env var) and key path. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly code = 'CONFIG_INVALID';
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(problems.join('\n'));
    this.problems = problems;
  }
}

/** The nearest candidate within edit distance 2, to suggest for a misspelt key. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

// ---- leaves -------------------------------------------------------------

/** Quotes a bad value for an error message, shortened so a log line stays a line. */
export function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = typeof v === 'string' ? JSON.stringify(v) : (JSON.stringify(v) ?? String(v));
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

interface LeafOpts {
  secret?: boolean;
}

/** A leaf whose `convert` returns undefined for a value it rejects. */
function leaf<T>(expected: string, convert: (v: unknown) => T | undefined, opts: LeafOpts = {}) {
  return z.unknown().transform((v, ctx): T => {
    const out = v === undefined ? undefined : convert(v);
    if (out === undefined) {
      const got = v === undefined ? 'is required' : opts.secret ? `expected ${expected}` : `expected ${expected}, got ${describe(v)}`;
      ctx.addIssue({ code: 'custom', message: got });
      return z.NEVER;
    }
    return out;
  });
}

const NUMERIC = /^\s*[+-]?(\d+\.?\d*|\.\d+)\s*$/;
const toNumber = (v: unknown): number | undefined =>
  typeof v === 'number' ? v : typeof v === 'string' && NUMERIC.test(v) ? Number(v) : undefined;

export const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  leaf(max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`, (v) => {
    const n = toNumber(v);
    return n !== undefined && Number.isInteger(n) && n >= min && n <= max ? n : undefined;
  });

/** Durations are seconds, fractions allowed, as in PgBouncer. */
export const seconds = () =>
  leaf('a number of seconds >= 0', (v) => {
    const n = toNumber(v);
    return n !== undefined && Number.isFinite(n) && n >= 0 ? n : undefined;
  });

const TRUE = new Set(['true', '1', 'yes', 'on']);
const FALSE = new Set(['false', '0', 'no', 'off']);
export const bool = () =>
  leaf('a boolean (true/false, yes/no, on/off, 1/0)', (v) => {
    if (typeof v === 'boolean') return v;
    if (typeof v !== 'string' && typeof v !== 'number') return undefined;
    const s = String(v).trim().toLowerCase();
    return TRUE.has(s) ? true : FALSE.has(s) ? false : undefined;
  });

export const str = (opts: LeafOpts & { empty?: boolean } = {}) =>
  leaf(opts.empty ? 'a string' : 'a non-empty string', (v) => (typeof v === 'string' && (opts.empty || v !== '') ? v : undefined), opts);

/** Optional string: null, or '' (an empty env var or YAML value) mean "not set". */
export const optStr = (opts: LeafOpts = {}) =>
  leaf('a string or null', (v) => (v === null || v === '' ? null : typeof v === 'string' ? v : undefined), opts);

export const oneOf = <T extends string>(values: readonly T[]) =>
  leaf(`one of ${values.join(', ')}`, (v) => {
    const s = typeof v === 'string' ? v.trim().toLowerCase() : undefined;
    return values.find((x) => x === s);
  });

/** `null` or what `inner` accepts, keeping inner's message on a bad value. */
const nullable = <T>(inner: z.ZodType<T>) =>
  z.unknown().transform((v, ctx): T | null => {
    if (v === null) return null;
    const r = inner.safeParse(v);
    if (r.success) return r.data;
    for (const issue of r.error.issues) ctx.addIssue({ code: 'custom', message: issue.message });
    return z.NEVER;
  });

/** A YAML list of strings, or one comma-separated string (env, pgbouncer.ini). */
export const list = () =>
  leaf('a list of strings or a comma-separated string', (v): string[] | undefined => {
    if (typeof v === 'string') return v.split(',').map((s) => s.trim()).filter((s) => s !== '');
    if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return v.map((s) => s.trim()).filter((s) => s !== '');
    return undefined;
  });

/** PgBouncer spells this as a list ("secure", "tlsv1.2,tlsv1.3"); we keep its minimum. */
const tlsProtocols = () =>
  leaf("tlsv1.2, tlsv1.3 or secure (TLS below 1.2 is not supported)", (v): TlsProtocol | undefined => {
    if (typeof v !== 'string') return undefined;
    const parts = v.toLowerCase().split(',').map((s) => s.trim()).filter((s) => s !== '');
    if (parts.length === 0 || !parts.every((p) => p === 'tlsv1.2' || p === 'tlsv1.3' || p === 'secure')) return undefined;
    return parts.every((p) => p === 'tlsv1.3') ? 'tlsv1.3' : 'tlsv1.2';
  });

/** PgBouncer's server_tls_protocols: versions and the shortcuts all, secure and legacy. */
const serverTlsProtocols = () =>
  leaf('a comma-separated list of tlsv1.0, tlsv1.1, tlsv1.2, tlsv1.3, all, secure or legacy', (v): ServerTlsProtocol[] | undefined => {
    if (typeof v !== 'string') return undefined;
    const out = new Set<ServerTlsProtocol>();
    for (const p of v.toLowerCase().split(',').map((s) => s.trim()).filter((s) => s !== '')) {
      if (p === 'all' || p === 'legacy') for (const x of ['tlsv1.0', 'tlsv1.1', 'tlsv1.2', 'tlsv1.3'] as const) out.add(x);
      else if (p === 'secure') for (const x of ['tlsv1.2', 'tlsv1.3'] as const) out.add(x);
      else if (p === 'tlsv1.0' || p === 'tlsv1.1' || p === 'tlsv1.2' || p === 'tlsv1.3') out.add(p);
      else return undefined;
    }
    return out.size > 0 ? [...out] : undefined;
  });

const OFF = new Set(['off', 'false', 'no', 'none', 'disabled']);
/** A port, or off (false, none, …) to turn the listener off. */
const portOrOff = () =>
  leaf('an integer from 0 to 65535, or off', (v): number | null | undefined => {
    if (v === false || (typeof v === 'string' && OFF.has(v.trim().toLowerCase()))) return null;
    const n = toNumber(v);
    return n !== undefined && Number.isInteger(n) && n >= 0 && n <= 65535 ? n : undefined;
  });

/** One address; PgBouncer's `*` means all IPv4 addresses here. */
const listenAddr = () =>
  leaf('one host name or IP address (a list is not supported)', (v) => {
    if (typeof v !== 'string' || v.trim() === '' || v.includes(',')) return undefined;
    return v.trim() === '*' ? '0.0.0.0' : v.trim();
  });

/** `{db}` is the only template; anything else in braces is a typo we catch now. A comma-separated list names several hosts. */
const hostTemplate = () =>
  leaf('a host name, or a comma-separated list of them ("{db}" is replaced by the requested database)', (v) => {
    if (typeof v !== 'string' || v === '') return undefined;
    const hosts = v.split(',').map((h) => h.trim());
    if (hosts.some((h) => h === '' || /[{}]/.test(h.replaceAll('{db}', '')))) return undefined;
    return hosts.join(',');
  });

/** A port, or a comma-separated list (one per host, as libpq takes them). */
const portList = () =>
  z.unknown().transform((v, ctx): number[] => {
    const list = typeof v === 'string' && v.includes(',');
    const parts = typeof v === 'number' ? [v] : typeof v === 'string' ? v.split(',').map(toNumber) : [undefined];
    if (parts.every((n) => n !== undefined && Number.isInteger(n) && n >= 1 && n <= 65535)) return parts as number[];
    const expected = list ? 'a comma-separated list of ports from 1 to 65535' : 'an integer from 1 to 65535';
    ctx.addIssue({ code: 'custom', message: v === undefined ? 'is required' : `expected ${expected}, got ${describe(v)}` });
    return z.NEVER;
  });

// ---- entries ------------------------------------------------------------

export const POOL_MODES = ['session', 'transaction', 'statement'] as const satisfies readonly PoolMode[];
export const SSL_MODES = ['disable', 'allow', 'prefer', 'require'] as const satisfies readonly ClientSslMode[];
export const SERVER_SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const satisfies readonly ServerSslMode[];
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const satisfies readonly LogLevel[];

const databaseObject = z
  .object({
    host: hostTemplate(),
    port: portList().default([5432]),
    dbname: optStr().default(null),
    user: optStr().default(null),
    pool_mode: nullable(oneOf(POOL_MODES)).default(null),
    pool_size: nullable(int(1)).default(null),
    min_pool_size: nullable(int(0)).default(null),
    reserve_pool_size: nullable(int(0)).default(null),
    max_db_connections: nullable(int(0)).default(null),
    max_db_client_connections: nullable(int(0)).default(null),
    auth_dbname: optStr().default(null),
    auth_user: optStr().default(null),
    auth_query: optStr().default(null),
    connect_query: optStr().default(null),
    client_encoding: optStr().default(null),
    datestyle: optStr().default(null),
    timezone: optStr().default(null),
    server_lifetime: nullable(seconds()).default(null),
    load_balance_hosts: oneOf(['disable', 'round-robin'] as const).default('round-robin'),
  })
  .strict()
  .transform((e, ctx) => {
    const hosts = e.host.split(',').length;
    if (e.port.length !== 1 && e.port.length !== hosts) {
      ctx.addIssue({ code: 'custom', path: ['port'], message: `${e.port.length} ports for ${hosts} hosts: give one port for all hosts, or one per host` });
    }
    return { ...e, port: e.port[0]!, ports: e.port };
  });

/** A database entry: a DSN string or an object with the same keys. */
export const databaseEntrySchema = z.preprocess((v, ctx) => {
  if (typeof v !== 'string') return v;
  try {
    return parseDsn(v);
  } catch (e) {
    if (!(e instanceof DsnError)) throw e;
    ctx.addIssue({ code: 'custom', message: e.message });
    return z.NEVER;
  }
}, databaseObject);

export const userEntrySchema = z.preprocess(
  (v) => (v === null ? {} : v), // `alice:` with nothing after it
  z
    .object({
      pool_mode: nullable(oneOf(POOL_MODES)).default(null),
      pool_size: nullable(int(1)).default(null),
      max_user_connections: nullable(int(0)).default(null),
      max_user_client_connections: nullable(int(0)).default(null),
    })
    .strict(),
);

export const DATABASE_KEYS: readonly string[] = DSN_KEYS;
export const USER_KEYS: readonly string[] = ['pool_mode', 'pool_size', 'max_user_connections', 'max_user_client_connections'];

// ---- the whole file -----------------------------------------------------

/** Keys settable from YAML, PG_INGRESS_* and overrides, with their defaults. */
export const configSchema = z
  .object({
    listen_addr: listenAddr().default('0.0.0.0'),
    listen_port: int(0, 65535).default(6432), // 0 = any free port (tests)
    listen_reuse_port: oneOf(['auto', 'off'] as const).default('auto'),
    client_tls_sslmode: oneOf(SSL_MODES).default('require'),
    client_tls_cert_file: optStr().default(null),
    client_tls_key_file: optStr().default(null),
    client_tls_protocols: tlsProtocols().default('tlsv1.2'),
    // Not PgBouncer's prefer: the upstream is usually inside the cluster, and every server login would pay a handshake.
    server_tls_sslmode: oneOf(SERVER_SSL_MODES).default('disable'),
    server_tls_ca_file: optStr().default(null),
    server_tls_cert_file: optStr().default(null),
    server_tls_key_file: optStr().default(null),
    server_tls_protocols: serverTlsProtocols().default(['tlsv1.2', 'tlsv1.3']),
    server_tls_ciphers: str().default('default'),
    auth_user: str().default('pgbouncer'),
    auth_password: optStr({ secret: true }).default(null),
    auth_password_file: optStr().default(null),
    auth_query: str().default('SELECT username, password FROM pgbouncer.get_auth($1)'),
    auth_dbname: optStr().default(null),
    auth_file: optStr().default(null),
    auth_cache_ttl: seconds().default(10),
    auth_cache_size: int(1).default(10_000),
    auth_max_concurrent_lookups: int(1).default(16),
    auth_failure_limit: int(0).default(10),
    auth_failure_window: seconds().default(60),
    auth_failure_block: seconds().default(60),
    allow_superuser: bool().default(false),
    pool_mode: oneOf(POOL_MODES).default('session'),
    default_pool_size: int(1).default(20),
    min_pool_size: int(0).default(0),
    reserve_pool_size: int(0).default(0),
    reserve_pool_timeout: seconds().default(5),
    max_client_conn: int(1).default(100),
    max_db_connections: int(0).default(0),
    max_user_connections: int(0).default(0),
    max_db_client_connections: int(0).default(0),
    max_user_client_connections: int(0).default(0),
    server_reset_query: str({ empty: true }).default('DISCARD ALL'),
    server_reset_query_always: bool().default(false),
    server_check_query: str({ empty: true }).default('select 1'),
    server_check_delay: seconds().default(30),
    server_lifetime: seconds().default(3600),
    server_idle_timeout: seconds().default(600),
    server_connect_timeout: seconds().default(15),
    server_login_retry: seconds().default(15),
    query_timeout: seconds().default(0),
    query_wait_timeout: seconds().default(120),
    client_idle_timeout: seconds().default(0),
    client_login_timeout: seconds().default(60),
    shutdown_timeout: seconds().default(30),
    max_pending_logins: int(0).default(0),
    tcp_keepalive: bool().default(true),
    tcp_keepidle: seconds().default(0),
    idle_transaction_timeout: seconds().default(0),
    max_prepared_statements: int(0).default(200),
    max_client_prepared_statements: int(1).default(1000),
    max_client_prepared_bytes: int(1024).default(4 * 1024 * 1024),
    autodb_idle_timeout: seconds().default(3600),
    ignore_startup_parameters: list().default(['extra_float_digits']),
    track_extra_parameters: list().default([]),
    max_packet_size: int(1024, 2147483647).default(2147483647),
    workers: int(0, 126).default(0),
    metrics_listen_addr: listenAddr().default('0.0.0.0'),
    metrics_port: portOrOff().default(9127), // pgbouncer_exporter's port
    metrics_auth_token: optStr({ secret: true }).default(null),
    metrics_auth_token_file: optStr().default(null),
    admin_users: list().default([]),
    stats_users: list().default([]),
    log_level: oneOf(LOG_LEVELS).default('info'),
    log_format: oneOf(['text', 'json', 'auto'] as const).default('auto'),
    log_connections: bool().default(true),
    log_disconnections: bool().default(true),
    log_pooler_errors: bool().default(true),
    log_stats: bool().default(true),
    stats_period: int(1).default(60),
    databases: z.record(z.string(), databaseEntrySchema).default({}),
    users: z.record(z.string(), userEntrySchema).default({}),
  })
  .strict();

export type ConfigInput = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;

export const CONFIG_KEYS: readonly string[] = Object.keys(configSchema.shape);
/** Keys an env var can set: everything but the two maps. */
export const SCALAR_KEYS: readonly string[] = CONFIG_KEYS.filter((k) => k !== 'databases' && k !== 'users');
/** Keys whose values never appear in messages. */
export const SECRET_KEYS: ReadonlySet<string> = new Set(['auth_password', 'metrics_auth_token', 'auth_file_passwords']);
