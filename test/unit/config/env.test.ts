import { describe, expect, test } from 'vitest';
import { BITNAMI_VARS, loadConfig, pgIngressVar } from '../../../src/config/index.js';
import { SCALAR_KEYS } from '../../../src/config/schema.js';
import { configError, tempDir } from './helpers.js';

const file = tempDir();
const fromEnv = (env: Record<string, string | undefined>) => loadConfig({ file: null, env });
const userlist = file('userlist.txt', '"alice" "md545f2603610af569b6155c45067268c6b"\n');

// A valid string for every scalar key, with the value it becomes.
const valid: Record<string, [string, unknown]> = {
  listen_addr: ['127.0.0.1', '127.0.0.1'],
  listen_port: ['7432', 7432],
  listen_reuse_port: ['off', 'off'],
  client_tls_sslmode: ['prefer', 'prefer'],
  client_tls_cert_file: ['/tls/tls.crt', '/tls/tls.crt'],
  client_tls_key_file: ['/tls/tls.key', '/tls/tls.key'],
  client_tls_protocols: ['tlsv1.3', 'tlsv1.3'],
  server_tls_sslmode: ['verify-full', 'verify-full'],
  server_tls_ca_file: ['/etc/pg/ca.pem', '/etc/pg/ca.pem'],
  server_tls_cert_file: ['/etc/pg/client.pem', '/etc/pg/client.pem'],
  server_tls_key_file: ['/etc/pg/client.key', '/etc/pg/client.key'],
  server_tls_protocols: ['secure,tlsv1.1', ['tlsv1.2', 'tlsv1.3', 'tlsv1.1']],
  server_tls_ciphers: ['HIGH:!aNULL', 'HIGH:!aNULL'],
  auth_user: ['auth', 'auth'],
  auth_password: ['pw', 'pw'],
  auth_password_file: ['', undefined], // covered below with a real file
  auth_query: ['SELECT 1, 2', 'SELECT 1, 2'],
  auth_dbname: ['postgres', 'postgres'],
  auth_file: [userlist, userlist],
  auth_cache_ttl: ['2.5', 2.5],
  auth_cache_size: ['500', 500],
  auth_max_concurrent_lookups: ['4', 4],
  auth_failure_limit: ['0', 0],
  auth_failure_window: ['30', 30],
  auth_failure_block: ['0.5', 0.5],
  allow_superuser: ['yes', true],
  pool_mode: ['transaction', 'transaction'],
  default_pool_size: ['30', 30],
  min_pool_size: ['2', 2],
  reserve_pool_size: ['3', 3],
  reserve_pool_timeout: ['1', 1],
  max_client_conn: ['1000', 1000],
  max_db_connections: ['50', 50],
  max_user_connections: ['40', 40],
  max_db_client_connections: ['30', 30],
  max_user_client_connections: ['40', 40],
  server_reset_query: ['RESET ALL', 'RESET ALL'],
  server_reset_query_always: ['on', true],
  server_check_query: ['SELECT 2', 'SELECT 2'],
  server_check_delay: ['10', 10],
  server_lifetime: ['60', 60],
  server_idle_timeout: ['30', 30],
  server_connect_timeout: ['5', 5],
  server_login_retry: ['0.5', 0.5],
  query_timeout: ['300', 300],
  query_wait_timeout: ['60', 60],
  client_idle_timeout: ['900', 900],
  client_login_timeout: ['20', 20],
  shutdown_timeout: ['45', 45],
  max_pending_logins: ['10', 10],
  tcp_keepalive: ['off', false],
  tcp_keepidle: ['30', 30],
  idle_transaction_timeout: ['15', 15],
  max_prepared_statements: ['0', 0],
  max_client_prepared_statements: ['50', 50],
  max_client_prepared_bytes: ['65536', 65536],
  autodb_idle_timeout: ['0', 0],
  ignore_startup_parameters: ['extra_float_digits,options', ['extra_float_digits', 'options']],
  track_extra_parameters: ['IntervalStyle, search_path', ['IntervalStyle', 'search_path']],
  max_packet_size: ['65536', 65536],
  workers: ['2', 2],
  metrics_listen_addr: ['127.0.0.1', '127.0.0.1'],
  metrics_port: ['off', null],
  metrics_auth_token: ['tok', 'tok'],
  metrics_auth_token_file: ['', undefined], // covered in metrics-auth-token.test.ts with a real file
  admin_users: ['ops, root', ['ops', 'root']],
  stats_users: ['monitor', ['monitor']],
  log_level: ['debug', 'debug'],
  log_format: ['text', 'text'],
  log_connections: ['0', false],
  log_disconnections: ['off', false],
  log_pooler_errors: ['no', false],
  log_stats: ['false', false],
  stats_period: ['15', 15],
};

// The cert and key must be set together.
const partner: Record<string, string> = { client_tls_cert_file: 'client_tls_key_file', client_tls_key_file: 'client_tls_cert_file' };
const withPartner = (key: string, varName: (k: string) => string): Record<string, string> => {
  const p = partner[key];
  return p ? { [varName(p)]: valid[p]![0] } : {};
};

describe('PG_INGRESS_<KEY>', () => {
  test('the table covers every scalar key', () => {
    expect(Object.keys(valid).sort()).toEqual([...SCALAR_KEYS].sort());
  });

  test.each(Object.entries(valid).filter(([k]) => k !== 'auth_password_file'))('%s', (key, [text, value]) => {
    const c = fromEnv({ [pgIngressVar(key)]: text, ...withPartner(key, pgIngressVar) }) as unknown as Record<string, unknown>;
    expect(c[key]).toEqual(value);
  });

  test('a bad value names the variable and the key', () => {
    expect(configError(() => fromEnv({ PG_INGRESS_LISTEN_PORT: 'abc' }))).toBe(
      'PG_INGRESS_LISTEN_PORT: listen_port: expected an integer from 0 to 65535, got "abc"',
    );
    expect(configError(() => fromEnv({ PG_INGRESS_ALLOW_SUPERUSER: 'maybe' }))).toMatch(/^PG_INGRESS_ALLOW_SUPERUSER: allow_superuser: expected a boolean/);
  });

  test('an empty variable counts as unset', () => {
    expect(fromEnv({ PG_INGRESS_LISTEN_PORT: '', PG_INGRESS_SERVER_RESET_QUERY: '' })).toMatchObject({
      listen_port: 6432,
      server_reset_query: 'DISCARD ALL',
    });
  });

  test('a near miss of a known variable is an error; other PG_INGRESS_* are left alone', () => {
    expect(configError(() => fromEnv({ PG_INGRESS_LISTEN_PROT: '1' }))).toBe(
      'PG_INGRESS_LISTEN_PROT: unknown variable (did you mean PG_INGRESS_LISTEN_PORT?)',
    );
    expect(fromEnv({ PG_INGRESS_WORKERS: '4', PG_INGRESS_CONFIG: '/etc/x.yaml' }).listen_port).toBe(6432);
  });
});

describe('precedence: defaults < file < PGBOUNCER_* < PG_INGRESS_* < overrides', () => {
  const path = file('p.yaml', 'listen_port: 1001\npool_mode: transaction\ndefault_pool_size: 7\nmax_client_conn: 9\n');
  const env = { PGBOUNCER_PORT: '1002', PGBOUNCER_POOL_MODE: 'statement', PGBOUNCER_DEFAULT_POOL_SIZE: '8', PG_INGRESS_LISTEN_PORT: '1003', PG_INGRESS_POOL_MODE: 'session' };

  test('each layer wins over the ones below it', () => {
    const c = loadConfig({ file: path, env, overrides: { listen_port: 1004 } });
    expect(c.listen_port).toBe(1004); // overrides
    expect(c.pool_mode).toBe('session'); // PG_INGRESS_*
    expect(c.default_pool_size).toBe(8); // PGBOUNCER_*
    expect(c.max_client_conn).toBe(9); // file
    expect(c.max_db_connections).toBe(0); // default
  });

  test('process.env is the default environment', () => {
    process.env.PG_INGRESS_MAX_CLIENT_CONN = '77';
    try {
      expect(loadConfig({ file: null }).max_client_conn).toBe(77);
    } finally {
      delete process.env.PG_INGRESS_MAX_CLIENT_CONN;
    }
  });
});

// Every Bitnami variable, one by one, is in bitnami.test.ts.
describe('Bitnami PGBOUNCER_* variables', () => {
  test.each(BITNAMI_VARS.map(([name, key]) => [name, key]))('%s sets %s', (name, key) => {
    const text = valid[key]![0];
    const c = fromEnv({ [name]: text, ...withPartner(key, pgIngressVar) }) as unknown as Record<string, unknown>;
    expect(c[key]).toEqual(valid[key]![1]);
  });

  test('a bad value names the variable', () => {
    expect(configError(() => fromEnv({ PGBOUNCER_CLIENT_TLS_SSLMODE: 'verify-full' }))).toBe(
      'PGBOUNCER_CLIENT_TLS_SSLMODE: client_tls_sslmode: expected one of disable, allow, prefer, require, got "verify-full"',
    );
  });

  test("PGBOUNCER_LISTEN_ADDRESS (what the image reads) wins over PGBOUNCER_BIND_ADDRESS (its old README); '*' is all", () => {
    expect(fromEnv({ PGBOUNCER_BIND_ADDRESS: '10.0.0.1', PGBOUNCER_LISTEN_ADDRESS: '*' }).listen_addr).toBe('0.0.0.0');
    expect(fromEnv({ PGBOUNCER_BIND_ADDRESS: '10.0.0.1' }).listen_addr).toBe('10.0.0.1');
  });

  test('<NAME>_FILE wins over <NAME>, as in the image', () => {
    const path = file('port', '7777\n');
    expect(fromEnv({ PGBOUNCER_PORT: '1', PGBOUNCER_PORT_FILE: path }).listen_port).toBe(7777);
    expect(configError(() => fromEnv({ PGBOUNCER_PORT_FILE: '/nonexistent/port' }))).toBe(
      'PGBOUNCER_PORT_FILE: cannot read "/nonexistent/port": ENOENT',
    );
  });

  test('empty values count as unset, as in the image', () => {
    expect(fromEnv({ PGBOUNCER_PORT: '' }).listen_port).toBe(6432);
  });
});

describe('auth_password_file', () => {
  test('reads the file and trims one trailing newline', () => {
    const path = file('pw1', 's3cret\n');
    expect(loadConfig({ env: {}, overrides: { auth_password_file: path } }).auth_password).toBe('s3cret');
    expect(loadConfig({ env: {}, overrides: { auth_password_file: file('pw2', 'a b\n\n') } }).auth_password).toBe('a b\n');
    expect(loadConfig({ env: {}, overrides: { auth_password_file: file('pw3', 'crlf\r\n') } }).auth_password).toBe('crlf');
    expect(loadConfig({ env: {}, overrides: { auth_password_file: file('pw4', 'none') } }).auth_password).toBe('none');
  });

  test('from YAML and from PG_INGRESS_AUTH_PASSWORD_FILE', () => {
    const pw = file('pw5', 'yaml-pw\n');
    const yaml = file('pwf.yaml', `auth_password_file: ${pw}\n`);
    expect(loadConfig({ file: yaml, env: {} }).auth_password).toBe('yaml-pw');
    expect(fromEnv({ PG_INGRESS_AUTH_PASSWORD_FILE: pw }).auth_password).toBe('yaml-pw');
  });

  test('a missing file is an error naming the key and the path', () => {
    const yaml = file('missing.yaml', 'auth_password_file: /nonexistent/secret/password\n');
    expect(configError(() => loadConfig({ file: yaml, env: {} }))).toBe(
      `${yaml}: auth_password_file: cannot read "/nonexistent/secret/password": ENOENT`,
    );
    expect(configError(() => fromEnv({ PG_INGRESS_AUTH_PASSWORD_FILE: '/nonexistent/pw' }))).toBe(
      'PG_INGRESS_AUTH_PASSWORD_FILE: auth_password_file: cannot read "/nonexistent/pw": ENOENT',
    );
  });

  test('an empty file is an error', () => {
    expect(configError(() => loadConfig({ env: {}, overrides: { auth_password_file: file('empty', '\n') } }))).toMatch(
      /overrides: auth_password_file: ".*empty" is empty/,
    );
  });

  test('setting both auth_password and auth_password_file in one place is an error', () => {
    const yaml = file('both.yaml', 'auth_password: hunter2\nauth_password_file: /x\n');
    const err = configError(() => loadConfig({ file: yaml, env: {} }));
    expect(err).toBe(`${yaml}, ${yaml}: auth_password and auth_password_file are both set; set only one`);
    expect(err).not.toContain('hunter2');
    expect(configError(() => fromEnv({ PG_INGRESS_AUTH_PASSWORD: 'x', PG_INGRESS_AUTH_PASSWORD_FILE: '/x' }))).toBe(
      'PG_INGRESS_AUTH_PASSWORD, PG_INGRESS_AUTH_PASSWORD_FILE: auth_password and auth_password_file are both set; set only one',
    );
  });

  test('a higher layer choosing one source replaces the other from below', () => {
    const yaml = file('lower.yaml', 'auth_password_file: /nonexistent/pw\n');
    expect(loadConfig({ file: yaml, env: { PG_INGRESS_AUTH_PASSWORD: 'env-pw' } }).auth_password).toBe('env-pw');
    const pw = file('pw6', 'file-pw');
    const yaml2 = file('lower2.yaml', 'auth_password: yaml-pw\n');
    expect(loadConfig({ file: yaml2, env: { PG_INGRESS_AUTH_PASSWORD_FILE: pw } }).auth_password).toBe('file-pw');
  });
});

describe('secrets stay out of error messages', () => {
  test('a password set alongside other errors', () => {
    const yaml = file('leak.yaml', 'auth_password: "hunter2-yaml"\nlisten_port: x\n');
    const err = configError(() => loadConfig({ file: yaml, env: { PG_INGRESS_AUTH_PASSWORD: 'hunter2-env', PG_INGRESS_POOL_MODE: 'bad' } }));
    expect(err).not.toMatch(/hunter2/);
  });

  test('a password of the wrong type is described without its value', () => {
    const err = configError(() => loadConfig({ env: {}, overrides: { auth_password: 987654321 } }));
    expect(err).toBe('overrides: auth_password: expected a string or null');
    expect(err).not.toContain('987654321');
  });

  test('the contents of auth_password_file never appear', () => {
    const pw = file('pw7', 'contents-secret\n');
    const err = configError(() => loadConfig({ env: {}, overrides: { auth_password_file: pw, listen_port: -1 } }));
    expect(err).not.toContain('contents-secret');
  });
});
