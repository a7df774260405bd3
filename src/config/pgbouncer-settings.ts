// Every setting of PgBouncer 1.25 (doc/config.md) and what pg-ingress does with
// it, as data: docs/configuration.md renders this table (a test keeps the two
// equal), and applyPgBouncerSettings() acts on it before validation, so that a
// valid PgBouncer configuration never fails to start over a key PgBouncer
// accepts. The same rules hold for YAML and pgbouncer.ini alike.
import { NO_FORCED_LOGIN } from './dsn.js';

export type SettingSection = 'pgbouncer' | 'databases' | 'users' | 'peers';

export type SettingStatus =
  /** Implemented with PgBouncer's meaning. */
  | 'same'
  /** Implemented; `note` says how it differs. */
  | 'different'
  /** Accepted and removed before validation; a warning at start says why (`note`). */
  | 'no-effect'
  /** A configuration error that says why (`note`) and what to do instead. */
  | 'refused';

export interface PgBouncerSetting {
  section: SettingSection;
  key: string;
  status: SettingStatus;
  /** How it differs, why it has no effect, or why it is refused; '' for `same`. */
  note: string;
  /**
   * For `no-effect` and `refused`: values (PgBouncer's default, "off") that ask
   * for nothing pg-ingress lacks, accepted without a word.
   */
  inert?: readonly string[];
  /** For `no-effect`: values refused all the same, each with its reason. */
  refusedValues?: Readonly<Record<string, string>>;
  /** Values read as another (PgBouncer spellings with no literal meaning here). */
  translate?: Readonly<Record<string, string>>;
  /** PgBouncer's default, where pg-ingress's differs (`pg-ingress convert` names these). */
  pgbouncerDefault?: string;
}

export const STATUS_LABELS: Readonly<Record<SettingStatus, string>> = {
  same: 'implemented, same',
  different: 'implemented, different',
  'no-effect': 'accepted, no effect (warned)',
  refused: 'refused',
};

const row = (section: SettingSection, key: string, status: SettingStatus, note = '', extra: Partial<PgBouncerSetting> = {}): PgBouncerSetting => ({ section, key, status, note, ...extra });
const g = (key: string, status: SettingStatus, note = '', extra: Partial<PgBouncerSetting> = {}) => row('pgbouncer', key, status, note, extra);
const db = (key: string, status: SettingStatus, note = '', extra: Partial<PgBouncerSetting> = {}) => row('databases', key, status, note, extra);
const user = (key: string, status: SettingStatus, note = '', extra: Partial<PgBouncerSetting> = {}) => row('users', key, status, note, extra);

const OPENSSL_CIPHERS = ['default', 'secure', 'fast', 'normal'];
const NO_SYSLOG = 'logs go to stdout (JSON, or text on a terminal) for the container runtime or a log collector to pick up';
const NO_UNIX_SOCKET = 'pg-ingress listens on TCP only, no Unix socket';
const WINDOWS_SERVICE = 'names the Windows service; there is none here';
const NODE_TLS = "Node's TLS (OpenSSL) defaults apply";
const HBA_ONLY = 'read only with auth_type = hba, which is refused';
const PEERS = 'no peering: workers of one pg-ingress route cancel requests among themselves; a cancel that reaches another replica is not forwarded';
const USER_TIMEOUT = 'not per user: the global setting applies to every user';

/** In PgBouncer's order: [pgbouncer] as doc/config.md lists it, then [databases], [users], [peers]. */
export const PGBOUNCER_SETTINGS: readonly PgBouncerSetting[] = [
  g('logfile', 'no-effect', NO_SYSLOG, { inert: [''] }),
  g('pidfile', 'no-effect', 'no PID file is written; run under a supervisor (Kubernetes, systemd)', { inert: [''] }),
  g('listen_addr', 'different', 'one address, a list is refused; `*` means every IPv4 address; unset means 0.0.0.0', { pgbouncerDefault: 'unset (Unix socket only)' }),
  g('listen_port', 'same'),
  g('unix_socket_dir', 'no-effect', NO_UNIX_SOCKET, { inert: ['', '/tmp'] }),
  g('unix_socket_mode', 'no-effect', NO_UNIX_SOCKET, { inert: ['0777', '777'] }),
  g('unix_socket_group', 'no-effect', NO_UNIX_SOCKET, { inert: [''] }),
  g('user', 'no-effect', 'pg-ingress runs as the user that starts it (the container user)', { inert: [''] }),
  g('pool_mode', 'same'),
  g('max_client_conn', 'same'),
  g('default_pool_size', 'same'),
  g('min_pool_size', 'same'),
  g('reserve_pool_size', 'same'),
  g('reserve_pool_timeout', 'same'),
  g('max_db_connections', 'same'),
  g('max_db_client_connections', 'same'),
  g('max_user_connections', 'same'),
  g('max_user_client_connections', 'same'),
  g('server_round_robin', 'no-effect', 'idle servers are reused last in, first out', { inert: ['0'] }),
  g('track_extra_parameters', 'different', 'IntervalStyle and search_path are tracked always; the default is empty', { pgbouncerDefault: 'IntervalStyle' }),
  g('ignore_startup_parameters', 'different', 'the default is extra_float_digits', { pgbouncerDefault: 'empty' }),
  g('peer_id', 'no-effect', PEERS, { inert: ['0'] }),
  g('disable_pqexec', 'refused', 'the simple query protocol cannot be turned off in pg-ingress; starting without it would allow what the setting forbids', { inert: ['0'] }),
  g('application_name_add_host', 'no-effect', 'application_name reaches the server as the client set it', { inert: ['0'] }),
  g('conffile', 'no-effect', 'a reload reads the file given with --config again'),
  g('service_name', 'no-effect', WINDOWS_SERVICE, { inert: ['', 'pgbouncer'] }),
  g('job_name', 'no-effect', WINDOWS_SERVICE, { inert: ['', 'pgbouncer'] }),
  g('stats_period', 'same'),
  g('max_prepared_statements', 'same'),
  g('scram_iterations', 'no-effect', 'pg-ingress computes no SCRAM secret: verifiers come from PostgreSQL or the auth_file as they are', { inert: ['4096'] }),
  g('auth_type', 'no-effect', "the method follows each user's stored secret: SCRAM-SHA-256 for a SCRAM verifier, md5 for an md5 hash (as PgBouncer's md5 and scram-sha-256 do); with trust, any or plain clients still authenticate", {
    inert: ['md5', 'scram-sha-256'],
    refusedValues: {
      hba: 'HBA rules are not supported: put them in the upstream pg_hba.conf and set auth_type = scram-sha-256',
      cert: 'client certificates are not checked; authenticate with SCRAM passwords (auth_type = scram-sha-256)',
      ldap: 'pg-ingress authenticates against the verifiers PostgreSQL stores; LDAP users cannot log in through it',
      pam: 'pg-ingress authenticates against the verifiers PostgreSQL stores; PAM users cannot log in through it',
    },
  }),
  g('auth_hba_file', 'refused', "HBA rules are out of scope: put them in the upstream PostgreSQL's pg_hba.conf (user and database rules carry over; address rules there see pg-ingress's address, so limit client addresses with a NetworkPolicy or the Service's loadBalancerSourceRanges), then remove auth_hba_file", { inert: [''] }),
  g('auth_ident_file', 'no-effect', HBA_ONLY, { inert: [''] }),
  g('auth_file', 'different', "users listed with a SCRAM verifier or md5 hash authenticate from the file, others with auth_query, as in PgBouncer; auth_user's plaintext password is taken from it when auth_password is unset; other users' plaintext passwords are not used (an upstream login replays what the client's SCRAM proof yields, never a stored password): those users are looked up with auth_query, with a warning"),
  g('auth_user', 'different', 'the default is pgbouncer, so auth_query runs for every user not in auth_file; its password comes from auth_password, auth_password_file or auth_file', { pgbouncerDefault: 'unset (only auth_file users)' }),
  g('auth_query', 'different', 'the default calls pgbouncer.get_auth($1), the SECURITY DEFINER function `pg-ingress init-sql` prints, instead of reading pg_authid, which needs a superuser', { pgbouncerDefault: 'SELECT rolname, ... FROM pg_authid ...' }),
  g('auth_dbname', 'same'),
  g('auth_ldap_options', 'no-effect', 'read only with auth_type = ldap, which is refused', { inert: [''] }),
  g('syslog', 'no-effect', NO_SYSLOG, { inert: ['0'] }),
  g('syslog_ident', 'no-effect', NO_SYSLOG, { inert: ['pgbouncer'] }),
  g('syslog_facility', 'no-effect', NO_SYSLOG, { inert: ['daemon'] }),
  g('log_connections', 'same'),
  g('log_disconnections', 'same'),
  g('log_pooler_errors', 'same'),
  g('log_stats', 'same'),
  g('verbose', 'no-effect', 'set log_level (debug, trace) instead', { inert: ['0'] }),
  g('admin_users', 'same'),
  g('stats_users', 'same'),
  g('server_reset_query', 'same'),
  g('server_reset_query_always', 'same'),
  g('server_check_delay', 'same'),
  g('server_check_query', 'different', 'the default is select 1; `<empty>` (PgBouncer\'s default, an empty query) is read as select 1; an empty value turns the check off, as in PgBouncer', { translate: { '<empty>': 'select 1' }, pgbouncerDefault: '<empty>' }),
  g('server_fast_close', 'no-effect', "a session-mode server of a changed database is closed when its client leaves", { inert: ['0'] }),
  g('server_lifetime', 'same'),
  g('server_idle_timeout', 'same'),
  g('server_connect_timeout', 'same'),
  g('server_login_retry', 'same'),
  g('client_login_timeout', 'same'),
  g('autodb_idle_timeout', 'different', 'applies to every idle pool, not only to those made from `*`'),
  g('dns_max_ttl', 'no-effect', 'host names are resolved by the operating system at each server connection, with no cache of our own', { inert: ['15'] }),
  g('dns_nxdomain_ttl', 'no-effect', 'host names are resolved by the operating system at each server connection, with no cache of our own', { inert: ['15'] }),
  g('dns_zone_check_period', 'no-effect', 'no DNS zone polling', { inert: ['0'] }),
  g('resolv_conf', 'no-effect', "the operating system's resolver configuration applies", { inert: [''] }),
  g('query_wait_notify', 'no-effect', 'a client waiting for a server gets no notice while it waits', { inert: ['0', '5'] }),
  g('client_tls_sslmode', 'different', 'the default is require; verify-ca and verify-full are refused, since client certificates are not checked', { pgbouncerDefault: 'disable' }),
  g('client_tls_key_file', 'same'),
  g('client_tls_cert_file', 'different', 'reloaded when the file changes, without RELOAD; with neither file set, a self-signed certificate is made at start'),
  g('client_tls_ca_file', 'no-effect', 'client certificates are not checked (verify-ca and verify-full are refused)', { inert: [''] }),
  g('client_tls_protocols', 'different', 'the lowest version listed is the minimum; anything below TLS 1.2 (tlsv1.0, tlsv1.1, all, legacy) is refused'),
  g('client_tls_ciphers', 'no-effect', NODE_TLS, { inert: OPENSSL_CIPHERS }),
  g('client_tls13_ciphers', 'no-effect', NODE_TLS, { inert: [''] }),
  g('client_tls_ecdhcurve', 'no-effect', NODE_TLS, { inert: ['auto'] }),
  g('client_tls_dheparams', 'no-effect', NODE_TLS, { inert: ['auto'] }),
  g('server_tls_sslmode', 'different', "the default is disable: servers are usually reached over the cluster's own network, and prefer's unverified TLS costs CPU at every server login without stopping an active attacker; set require or verify-full to encrypt", { pgbouncerDefault: 'prefer' }),
  g('server_tls_ca_file', 'same'),
  g('server_tls_key_file', 'same'),
  g('server_tls_cert_file', 'same'),
  g('server_tls_protocols', 'same'),
  g('server_tls_ciphers', 'same'),
  g('server_tls13_ciphers', 'no-effect', NODE_TLS, { inert: [''] }),
  g('query_timeout', 'same'),
  g('query_wait_timeout', 'same'),
  g('cancel_wait_timeout', 'no-effect', 'a cancel request is forwarded at once on its own connection and given up after 10 s', { inert: ['10'] }),
  g('client_idle_timeout', 'same'),
  g('idle_transaction_timeout', 'same'),
  g('transaction_timeout', 'no-effect', "not implemented: use PostgreSQL's transaction_timeout (17 and later) or idle_transaction_timeout", { inert: ['0'] }),
  g('suspend_timeout', 'no-effect', 'there is no SUSPEND or online restart (-R); rolling updates drain instead (shutdown_timeout)', { inert: ['10'] }),
  g('pkt_buf', 'no-effect', 'buffers grow as messages need, bounded by max_packet_size', { inert: ['4096'] }),
  g('max_packet_size', 'same'),
  g('listen_backlog', 'no-effect', "Node's listen backlog (511) applies", { inert: ['128'] }),
  g('sbuf_loopcnt', 'no-effect', "Node's event loop takes turns between connections", { inert: ['5'] }),
  g('so_reuseport', 'no-effect', 'for more cores set workers: each worker listens on the port with SO_REUSEPORT where Node has it (listen_reuse_port)', { inert: ['0'] }),
  g('tcp_defer_accept', 'no-effect', 'Node cannot set TCP_DEFER_ACCEPT', { inert: ['0', '1'] }),
  g('tcp_socket_buffer', 'no-effect', "the operating system's socket buffer sizes apply", { inert: ['0'] }),
  g('tcp_keepalive', 'different', 'turns keepalive on client sockets on or off; server sockets always have it (60 s)'),
  g('tcp_keepcnt', 'no-effect', "Node sets only the idle time before the first probe (tcp_keepidle); the operating system's count applies", { inert: ['0'] }),
  g('tcp_keepidle', 'same'),
  g('tcp_keepintvl', 'no-effect', "Node sets only the idle time before the first probe (tcp_keepidle); the operating system's interval applies", { inert: ['0'] }),
  g('tcp_user_timeout', 'no-effect', 'Node cannot set TCP_USER_TIMEOUT', { inert: ['0'] }),

  db('dbname', 'same'),
  db('host', 'different', 'required: Unix sockets (PgBouncer\'s default when host is unset, or a path) are not supported; `{db}` is replaced by the requested database name; a list (host=a,b) is used as in PgBouncer'),
  db('port', 'same'),
  db('user', 'refused', `a forced server user: ${NO_FORCED_LOGIN}`),
  db('password', 'refused', `a forced server user's password: ${NO_FORCED_LOGIN}`),
  db('auth_user', 'same'),
  db('auth_query', 'same'),
  db('auth_dbname', 'same'),
  db('pool_size', 'same'),
  db('min_pool_size', 'same'),
  db('reserve_pool_size', 'same'),
  db('connect_query', 'same'),
  db('pool_mode', 'same'),
  db('load_balance_hosts', 'same'),
  db('max_db_connections', 'same'),
  db('max_db_client_connections', 'same'),
  db('server_lifetime', 'same'),
  db('client_encoding', 'same'),
  db('datestyle', 'same'),
  db('timezone', 'same'),
  // Not in doc/config.md, but src/loader.c reads it and etc/pgbouncer.ini names it.
  db('application_name', 'no-effect', "the client's own application_name reaches the server; removed from pgbouncer.ini entries and YAML mappings, while a YAML connection string holding it is an error (write the entry as a mapping)"),

  user('pool_size', 'same'),
  user('reserve_pool_size', 'no-effect', "not per user: the database's or the global reserve_pool_size applies"),
  user('pool_mode', 'same'),
  user('max_user_connections', 'same'),
  user('query_timeout', 'no-effect', USER_TIMEOUT),
  user('idle_transaction_timeout', 'no-effect', USER_TIMEOUT),
  user('transaction_timeout', 'no-effect', USER_TIMEOUT),
  user('client_idle_timeout', 'no-effect', USER_TIMEOUT),
  user('max_user_client_connections', 'same'),

  row('peers', 'host', 'no-effect', PEERS),
  row('peers', 'port', 'no-effect', PEERS),
  row('peers', 'pool_size', 'no-effect', PEERS),
];

const GLOBAL = new Map(PGBOUNCER_SETTINGS.filter((s) => s.section === 'pgbouncer').map((s) => [s.key, s]));
const BY_SECTION = (section: SettingSection) => new Map(PGBOUNCER_SETTINGS.filter((s) => s.section === section).map((s) => [s.key, s]));
const DATABASE = BY_SECTION('databases');
const USER = BY_SECTION('users');

/** The [pgbouncer] row of `key`, if PgBouncer has such a setting. */
export const pgbouncerSetting = (key: string): PgBouncerSetting | undefined => GLOBAL.get(key);

/** How a value compares with `inert` and `refusedValues`: YAML may give numbers and booleans. */
function normalized(v: unknown): string {
  if (v === true) return '1';
  if (v === false) return '0';
  if (v === null || v === undefined) return '';
  return String(v).trim().toLowerCase();
}

/**
 * Acts on the table over the merged raw values, in place: `no-effect` keys are
 * removed (each named in a notice unless its value is inert), `refused` keys
 * and refused values become problems, `translate` rewrites values. Database
 * and user entries given as mappings (pgbouncer.ini gives them so) are
 * handled the same way; `peers` goes whole. `sourceOf` names where a path came from.
 */
export function applyPgBouncerSettings(raw: Record<string, unknown>, sourceOf: (path: readonly string[]) => string): { notices: string[]; problems: string[] } {
  const notices: string[] = [];
  const problems: string[] = [];
  const act = (setting: PgBouncerSetting, holder: Record<string, unknown>, path: readonly string[]): void => {
    const key = path[path.length - 1]!;
    const value = holder[key];
    const where = `${sourceOf(path)}: ${path.join('.')}`;
    const v = normalized(value);
    const refusedValue = setting.refusedValues?.[v];
    if (refusedValue !== undefined) {
      problems.push(`${where}: ${JSON.stringify(v)} is not supported: ${refusedValue}`);
      return;
    }
    if (setting.translate && typeof value === 'string' && Object.hasOwn(setting.translate, value.trim())) {
      holder[key] = setting.translate[value.trim()];
      return;
    }
    if (setting.status !== 'no-effect' && setting.status !== 'refused') return;
    const inert = setting.inert?.includes(v) ?? false;
    if (setting.status === 'refused' && !inert) problems.push(`${where}: not supported: ${setting.note}`);
    else if (setting.status === 'no-effect' && !inert) notices.push(`${where}: accepted, has no effect in pg-ingress: ${setting.note}`);
    delete holder[key];
  };

  for (const key of Object.keys(raw)) {
    const setting = GLOBAL.get(key);
    if (setting) act(setting, raw, [key]);
  }
  for (const [map, rows] of [['databases', DATABASE], ['users', USER]] as const) {
    const entries = raw[map];
    if (!isMapping(entries)) continue;
    for (const [name, entry] of Object.entries(entries)) {
      if (!isMapping(entry)) continue; // a connection string: its keys are checked by the schema
      for (const key of Object.keys(entry)) {
        const setting = rows.get(key);
        // user= and password= keep their own messages (load.ts, schema): only no-effect keys are removed here.
        if (setting?.status === 'no-effect') act(setting, entry, [map, name, key]);
      }
    }
  }
  if (raw.peers !== undefined) {
    const count = isMapping(raw.peers) ? Object.keys(raw.peers).length : 0;
    notices.push(`${sourceOf(['peers'])}: peers (${count} ${count === 1 ? 'entry' : 'entries'}): accepted, has no effect in pg-ingress: ${PEERS}`);
    delete raw.peers;
  }
  return { notices, problems };
}

/** The table as docs/configuration.md shows it, one table per section (test/unit/config/compat.test.ts keeps them equal). */
export function pgbouncerSettingsMarkdown(): string {
  const code = (v: string): string => (v === '' ? 'empty' : `\`${v}\``);
  const out: string[] = [];
  for (const section of ['pgbouncer', 'databases', 'users', 'peers'] as const) {
    out.push(`### [${section}]`, '', '| Setting | In pg-ingress | How, or why |', '|---|---|---|');
    for (const s of PGBOUNCER_SETTINGS.filter((r) => r.section === section)) {
      // A sentence each; "pg-ingress" keeps its lower case.
      const sentence = s.note.startsWith('pg-ingress') ? s.note : `${s.note.charAt(0).toUpperCase()}${s.note.slice(1)}`;
      const parts = [s.note === '' ? '' : `${sentence}.`];
      if (s.pgbouncerDefault !== undefined) parts.push(`PgBouncer's default: ${code(s.pgbouncerDefault)}.`);
      if (s.refusedValues) parts.push(`Refused: ${Object.entries(s.refusedValues).map(([v, why]) => `${code(v)} (${why})`).join('; ')}.`);
      if (s.inert) parts.push(`${s.status === 'refused' ? 'Accepted' : 'No warning'} when ${s.inert.map(code).join(', ')}.`);
      out.push(`| ${s.key} | ${STATUS_LABELS[s.status]} | ${parts.filter((p) => p !== '').join(' ').replaceAll('|', '\\|')} |`);
    }
    out.push('');
  }
  return out.join('\n');
}

const isMapping = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
