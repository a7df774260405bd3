// Every PgBouncer 1.25 setting is accounted for (src/config/pgbouncer-settings.ts),
// docs/configuration.md shows the same table, and each row does what it says
// when a configuration carries the key, in YAML and in pgbouncer.ini alike.
// UPDATE_DOCS=1 rewrites the doc's table from the data.
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { ConfigError, loadConfig, type Config } from '../../../src/config/index.js';
import { PGBOUNCER_SETTINGS, pgbouncerSettingsMarkdown, type PgBouncerSetting } from '../../../src/config/pgbouncer-settings.js';
import { CONFIG_KEYS, DATABASE_KEYS, USER_KEYS } from '../../../src/config/schema.js';
import { tempDir } from './helpers.js';

const file = tempDir();

/** The settings PgBouncer 1.25.2 documents (doc/config.md headings, per section), and application_name, which loader.c reads. */
const PGBOUNCER_1_25 = {
  pgbouncer: 'logfile pidfile listen_addr listen_port unix_socket_dir unix_socket_mode unix_socket_group user pool_mode max_client_conn default_pool_size min_pool_size reserve_pool_size reserve_pool_timeout max_db_connections max_db_client_connections max_user_connections max_user_client_connections server_round_robin track_extra_parameters ignore_startup_parameters peer_id disable_pqexec application_name_add_host conffile service_name job_name stats_period max_prepared_statements scram_iterations auth_type auth_hba_file auth_ident_file auth_file auth_user auth_query auth_dbname auth_ldap_options syslog syslog_ident syslog_facility log_connections log_disconnections log_pooler_errors log_stats verbose admin_users stats_users server_reset_query server_reset_query_always server_check_delay server_check_query server_fast_close server_lifetime server_idle_timeout server_connect_timeout server_login_retry client_login_timeout autodb_idle_timeout dns_max_ttl dns_nxdomain_ttl dns_zone_check_period resolv_conf query_wait_notify client_tls_sslmode client_tls_key_file client_tls_cert_file client_tls_ca_file client_tls_protocols client_tls_ciphers client_tls13_ciphers client_tls_ecdhcurve client_tls_dheparams server_tls_sslmode server_tls_ca_file server_tls_key_file server_tls_cert_file server_tls_protocols server_tls_ciphers server_tls13_ciphers query_timeout query_wait_timeout cancel_wait_timeout client_idle_timeout idle_transaction_timeout transaction_timeout suspend_timeout pkt_buf max_packet_size listen_backlog sbuf_loopcnt so_reuseport tcp_defer_accept tcp_socket_buffer tcp_keepalive tcp_keepcnt tcp_keepidle tcp_keepintvl tcp_user_timeout',
  databases: 'dbname host port user password auth_user auth_query auth_dbname pool_size min_pool_size reserve_pool_size connect_query pool_mode load_balance_hosts max_db_connections max_db_client_connections server_lifetime client_encoding datestyle timezone application_name',
  users: 'pool_size reserve_pool_size pool_mode max_user_connections query_timeout idle_transaction_timeout transaction_timeout client_idle_timeout max_user_client_connections',
  peers: 'host port pool_size',
};

const userlist = file('userlist.txt', '"pgbouncer" "auth-pw"\n');
const DUMMY = file('dummy.pem', 'not read at load\n');

/** A value PgBouncer accepts for each implemented key, and the keys it needs beside it. */
const EXAMPLES: Record<string, string> = {
  'pgbouncer.listen_addr': '127.0.0.1', 'pgbouncer.listen_port': '7432', 'pgbouncer.pool_mode': 'transaction', 'pgbouncer.max_client_conn': '200',
  'pgbouncer.default_pool_size': '10', 'pgbouncer.min_pool_size': '1', 'pgbouncer.reserve_pool_size': '2', 'pgbouncer.reserve_pool_timeout': '3',
  'pgbouncer.max_db_connections': '50', 'pgbouncer.max_db_client_connections': '100', 'pgbouncer.max_user_connections': '50', 'pgbouncer.max_user_client_connections': '100',
  'pgbouncer.track_extra_parameters': 'IntervalStyle', 'pgbouncer.ignore_startup_parameters': 'extra_float_digits,options', 'pgbouncer.stats_period': '30',
  'pgbouncer.max_prepared_statements': '100', 'pgbouncer.auth_file': userlist, 'pgbouncer.auth_user': 'pgbouncer',
  'pgbouncer.auth_query': 'SELECT usename, passwd FROM pg_shadow WHERE usename=$1', 'pgbouncer.auth_dbname': 'postgres',
  'pgbouncer.log_connections': '0', 'pgbouncer.log_disconnections': '0', 'pgbouncer.log_pooler_errors': '0', 'pgbouncer.log_stats': '0',
  'pgbouncer.admin_users': 'admin', 'pgbouncer.stats_users': 'stats', 'pgbouncer.server_reset_query': 'DISCARD ALL', 'pgbouncer.server_reset_query_always': '1',
  'pgbouncer.server_check_delay': '10', 'pgbouncer.server_check_query': '<empty>', 'pgbouncer.server_lifetime': '1800', 'pgbouncer.server_idle_timeout': '300',
  'pgbouncer.server_connect_timeout': '5', 'pgbouncer.server_login_retry': '5', 'pgbouncer.client_login_timeout': '30', 'pgbouncer.autodb_idle_timeout': '600',
  'pgbouncer.client_tls_sslmode': 'prefer', 'pgbouncer.client_tls_key_file': DUMMY, 'pgbouncer.client_tls_cert_file': DUMMY, 'pgbouncer.client_tls_protocols': 'secure',
  'pgbouncer.server_tls_sslmode': 'prefer', 'pgbouncer.server_tls_ca_file': DUMMY, 'pgbouncer.server_tls_key_file': DUMMY, 'pgbouncer.server_tls_cert_file': DUMMY,
  'pgbouncer.server_tls_protocols': 'secure', 'pgbouncer.server_tls_ciphers': 'default', 'pgbouncer.query_timeout': '60', 'pgbouncer.query_wait_timeout': '60',
  'pgbouncer.client_idle_timeout': '600', 'pgbouncer.idle_transaction_timeout': '60', 'pgbouncer.max_packet_size': '1048576', 'pgbouncer.tcp_keepalive': '1', 'pgbouncer.tcp_keepidle': '60',
  'databases.dbname': 'app_prod', 'databases.host': 'db.example.com', 'databases.port': '5433', 'databases.user': 'baz', 'databases.password': 'foo',
  'databases.auth_user': 'pgbouncer', 'databases.auth_query': 'SELECT usename, passwd FROM pg_shadow WHERE usename=$1', 'databases.auth_dbname': 'postgres',
  'databases.pool_size': '5', 'databases.min_pool_size': '1', 'databases.reserve_pool_size': '1', 'databases.connect_query': 'SELECT 1', 'databases.pool_mode': 'transaction',
  'databases.load_balance_hosts': 'disable', 'databases.max_db_connections': '10', 'databases.max_db_client_connections': '20', 'databases.server_lifetime': '600',
  'databases.client_encoding': 'UTF8', 'databases.datestyle': 'ISO', 'databases.timezone': 'UTC',
  'users.pool_size': '5', 'users.pool_mode': 'session', 'users.max_user_connections': '5', 'users.max_user_client_connections': '10',
};
const COMPANIONS: Record<string, Record<string, string>> = {
  'pgbouncer.client_tls_key_file': { client_tls_cert_file: DUMMY },
  'pgbouncer.client_tls_cert_file': { client_tls_key_file: DUMMY },
  'pgbouncer.server_tls_key_file': { server_tls_cert_file: DUMMY },
  'pgbouncer.server_tls_cert_file': { server_tls_key_file: DUMMY },
};
/** Not inert for any row: a value an operator sets on purpose. */
const DELIBERATE = '7';

const id = (s: PgBouncerSetting): string => `${s.section}.${s.key}`;

describe('the table', () => {
  test('has every PgBouncer 1.25 setting once, in PgBouncer’s order', () => {
    for (const [section, keys] of Object.entries(PGBOUNCER_1_25)) {
      expect(PGBOUNCER_SETTINGS.filter((s) => s.section === section).map((s) => s.key)).toEqual(keys.split(' '));
    }
    expect(PGBOUNCER_SETTINGS).toHaveLength(Object.values(PGBOUNCER_1_25).join(' ').split(' ').length);
  });

  test('implemented keys are keys of the schema, the others are not (they are removed before it)', () => {
    const known = { pgbouncer: CONFIG_KEYS, databases: DATABASE_KEYS, users: USER_KEYS, peers: [] as readonly string[] };
    for (const s of PGBOUNCER_SETTINGS) {
      const implemented = s.status === 'same' || s.status === 'different';
      // user= and password= in a database entry are refused by load.ts and the schema with their own reason.
      if (s.section === 'databases' && (s.key === 'user' || s.key === 'password')) continue;
      expect(known[s.section].includes(s.key), `${id(s)} is ${s.status}`).toBe(implemented);
    }
  });

  test('every row that is not "same" says how or why', () => {
    for (const s of PGBOUNCER_SETTINGS) expect(s.note === '', id(s)).toBe(s.status === 'same');
  });

  test('docs/configuration.md shows exactly this table', () => {
    const doc = readFileSync('docs/configuration.md', 'utf8');
    const begin = '<!-- pgbouncer-settings:begin -->\n';
    const end = '<!-- pgbouncer-settings:end -->';
    const from = doc.indexOf(begin);
    const to = doc.indexOf(end);
    expect(from, 'the doc has the markers').toBeGreaterThan(0);
    const rendered = pgbouncerSettingsMarkdown();
    if (process.env.UPDATE_DOCS === '1') writeFileSync('docs/configuration.md', doc.slice(0, from + begin.length) + rendered + doc.slice(to));
    else expect(doc.slice(from + begin.length, to), 'run UPDATE_DOCS=1 npx vitest run test/unit/config/compat.test.ts').toBe(rendered);
  });
});

type Outcome = { kind: 'loaded'; config: Config } | { kind: 'refused'; message: string };

function outcome(load: () => Config): Outcome {
  try {
    return { kind: 'loaded', config: load() };
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return { kind: 'refused', message: e.message };
  }
}

/** A configuration carrying `s` with `value`, as YAML (mappings) or as pgbouncer.ini. */
function configWith(s: PgBouncerSetting, value: string, format: 'yaml' | 'ini'): string {
  const extra = COMPANIONS[id(s)] ?? {};
  const quoted = (v: string) => JSON.stringify(v);
  const conn = (o: Record<string, string>) => Object.entries(o).map(([k, v]) => `${k}=${/[ ']/.test(v) ? `'${v.replaceAll("'", "''")}'` : v}`).join(' ');
  const db = s.section === 'databases' ? { host: 'db.example.com', [s.key]: value } : { host: 'db.example.com' };
  const global = s.section === 'pgbouncer' ? { [s.key]: value, ...extra } : {};
  if (format === 'yaml') {
    const lines = [...Object.entries(global).map(([k, v]) => `${k}: ${quoted(v)}`), 'databases:', `  app: {${Object.entries(db).map(([k, v]) => `${k}: ${quoted(v)}`).join(', ')}}`];
    if (s.section === 'users') lines.push('users:', `  alice: {${s.key}: ${quoted(value)}}`);
    if (s.section === 'peers') lines.push('peers:', `  "1": ${quoted(`${s.key}=${value}`)}`);
    return file(`${id(s)}.yaml`, lines.join('\n'));
  }
  const lines = ['[databases]', `app = ${conn(db)}`];
  if (s.section === 'users') lines.push('[users]', `alice = ${conn({ [s.key]: value })}`);
  if (s.section === 'peers') lines.push('[peers]', `1 = ${conn({ [s.key]: value })}`);
  lines.push('[pgbouncer]', ...Object.entries(global).map(([k, v]) => `${k} = ${v}`));
  return file(`${id(s)}.ini`, lines.join('\n'));
}

const path = (s: PgBouncerSetting): string => (s.section === 'pgbouncer' ? s.key : s.section === 'databases' ? `databases.app.${s.key}` : s.section === 'users' ? `users.alice.${s.key}` : 'peers');

describe.each(['yaml', 'ini'] as const)('each row, loaded from %s', (format) => {
  test.each(PGBOUNCER_SETTINGS.map((s) => [id(s), s] as const))('%s', (_, s) => {
    const implemented = s.status === 'same' || s.status === 'different';
    const value = implemented ? EXAMPLES[id(s)] : DELIBERATE;
    expect(value, `an example value for ${id(s)}`).toBeDefined();
    const got = outcome(() => loadConfig({ file: configWith(s, value!, format), env: {} }));
    const mentions = (text: string) => text.includes(`${path(s)}:`) || text.includes(`${path(s)} (`);
    if (s.status === 'refused') {
      expect(got.kind).toBe('refused');
      if (got.kind === 'refused') {
        expect(mentions(got.message), got.message).toBe(true);
        expect(got.message).toContain('not supported');
      }
      return;
    }
    expect(got.kind, got.kind === 'refused' ? got.message : '').toBe('loaded');
    if (got.kind !== 'loaded') return;
    const warned = got.config.notices.filter(mentions);
    if (s.status === 'no-effect') expect(warned, got.config.notices.join('\n')).toEqual([expect.stringContaining('accepted, has no effect in pg-ingress')]);
    else expect(warned, got.config.notices.join('\n')).toEqual([]);
  });
});

describe('inert values and refused values', () => {
  const inert = PGBOUNCER_SETTINGS.flatMap((s) => (s.inert ?? []).map((v) => [`${id(s)} = ${JSON.stringify(v)}`, s, v] as const));
  test.each(inert)('%s loads without a word, in YAML and ini', (_, s, value) => {
    for (const format of ['yaml', 'ini'] as const) {
      const c = loadConfig({ file: configWith(s, value, format), env: {} });
      expect(c.notices).toEqual([]);
      expect(Object.hasOwn(c, s.key)).toBe(false);
    }
  });

  const refused = PGBOUNCER_SETTINGS.flatMap((s) => Object.keys(s.refusedValues ?? {}).map((v) => [`${id(s)} = ${v}`, s, v] as const));
  test.each(refused)('%s is refused with its reason', (_, s, value) => {
    for (const format of ['yaml', 'ini'] as const) {
      const got = outcome(() => loadConfig({ file: configWith(s, value, format), env: {} }));
      expect(got.kind).toBe('refused');
      if (got.kind === 'refused') expect(got.message).toContain(`${s.key}: "${value}" is not supported: ${s.refusedValues![value]}`);
    }
  });

  test("server_check_query = <empty> (PgBouncer's default) runs select 1", () => {
    const s = PGBOUNCER_SETTINGS.find((r) => r.key === 'server_check_query')!;
    expect(loadConfig({ file: configWith(s, '<empty>', 'ini'), env: {} }).server_check_query).toBe('select 1');
  });
});
