import { describe, expect, test } from 'vitest';
import { ConfigError, loadConfig, type Config } from '../../../src/config/index.js';
import { SCALAR_KEYS } from '../../../src/config/schema.js';
import { configError, tempDir } from './helpers.js';

const file = tempDir();
const fromYaml = (text: string, env: Record<string, string> = {}) => {
  const path = file('c.yaml', text);
  return { path, load: () => loadConfig({ file: path, env }) };
};

describe('defaults', () => {
  test('no file and no environment gives every default', () => {
    const c = loadConfig({ file: null, env: {} });
    const expected: Config = {
      config_file: null,
      listen_addr: '0.0.0.0',
      listen_port: 6432,
      listen_reuse_port: 'auto',
      client_tls_sslmode: 'require',
      client_tls_cert_file: null,
      client_tls_key_file: null,
      client_tls_protocols: 'tlsv1.2',
      server_tls_sslmode: 'disable',
      server_tls_ca_file: null,
      server_tls_cert_file: null,
      server_tls_key_file: null,
      server_tls_protocols: ['tlsv1.2', 'tlsv1.3'],
      server_tls_ciphers: 'default',
      auth_user: 'pgbouncer',
      auth_password: null,
      auth_query: 'SELECT username, password FROM pgbouncer.get_auth($1)',
      auth_dbname: null,
      auth_file: null,
      auth_file_passwords: {},
      auth_cache_ttl: 10,
      auth_cache_size: 10000,
      auth_max_concurrent_lookups: 16,
      auth_failure_limit: 10,
      auth_failure_window: 60,
      auth_failure_block: 60,
      allow_superuser: false,
      pool_mode: 'session',
      default_pool_size: 20,
      min_pool_size: 0,
      reserve_pool_size: 0,
      reserve_pool_timeout: 5,
      max_client_conn: 100,
      max_db_connections: 0,
      max_user_connections: 0,
      max_db_client_connections: 0,
      max_user_client_connections: 0,
      server_reset_query: 'DISCARD ALL',
      server_reset_query_always: false,
      server_check_query: 'select 1',
      server_check_delay: 30,
      server_lifetime: 3600,
      server_idle_timeout: 600,
      server_connect_timeout: 15,
      server_login_retry: 15,
      query_timeout: 0,
      query_wait_timeout: 120,
      client_idle_timeout: 0,
      client_login_timeout: 60,
      shutdown_timeout: 30,
      max_pending_logins: 0,
      tcp_keepalive: true,
      tcp_keepidle: 0,
      idle_transaction_timeout: 0,
      max_prepared_statements: 200,
      max_client_prepared_statements: 1000,
      max_client_prepared_bytes: 4194304,
      autodb_idle_timeout: 3600,
      ignore_startup_parameters: ['extra_float_digits'],
      track_extra_parameters: [],
      max_packet_size: 2147483647,
      workers: 0,
      metrics_listen_addr: '0.0.0.0',
      metrics_port: 9127,
      metrics_auth_token: null,
      admin_users: [],
      stats_users: [],
      log_level: 'info',
      log_format: 'auto',
      log_connections: true,
      log_disconnections: true,
      log_pooler_errors: true,
      log_stats: true,
      stats_period: 60,
      databases: {},
      users: {},
      notices: [],
    };
    expect(c).toEqual(expected);
  });

  test('an empty file gives the defaults and records the file', () => {
    const { path, load } = fromYaml('# nothing\n');
    expect(load().config_file).toBe(path);
    expect(load().listen_port).toBe(6432);
  });

  test('the shipped config/pg-ingress.yaml loads', () => {
    const c = loadConfig({ file: 'config/pg-ingress.yaml', env: {} });
    expect(c).toMatchObject({ listen_addr: '0.0.0.0', listen_port: 6432, auth_user: 'pgbouncer', auth_password: null });
    expect(c.client_tls_cert_file).toBeNull();
    expect(c.databases['*']).toEqual({
      name: '*', host: '127.0.0.1', port: 5432, dbname: null, user: null, pool_mode: null, pool_size: null, min_pool_size: null, reserve_pool_size: null, max_db_connections: null, max_db_client_connections: null, auth_dbname: null,
      ports: [5432], auth_user: null, auth_query: null, connect_query: null, client_encoding: null, datestyle: null, timezone: null, server_lifetime: null, load_balance_hosts: 'round-robin',
    });
  });
});

describe('type errors name the file and the key', () => {
  // One wrong value for every scalar key, with the start of its message.
  const bad: Record<string, [unknown, string]> = {
    listen_addr: ['a,b', 'expected one host name or IP address'],
    listen_port: ['abc', 'expected an integer from 0 to 65535, got "abc"'],
    listen_reuse_port: ['on', 'expected one of auto, off, got "on"'],
    client_tls_sslmode: ['verify-full', 'expected one of disable, allow, prefer, require, got "verify-full"'],
    client_tls_cert_file: [42, 'expected a string or null, got 42'],
    client_tls_key_file: [[], 'expected a string or null, got []'],
    client_tls_protocols: ['tlsv1.1', 'expected tlsv1.2, tlsv1.3 or secure'],
    server_tls_sslmode: ['verify', 'expected one of disable, allow, prefer, require, verify-ca, verify-full, got "verify"'],
    server_tls_ca_file: [1, 'expected a string or null, got 1'],
    server_tls_cert_file: [[], 'expected a string or null, got []'],
    server_tls_key_file: [true, 'expected a string or null, got true'],
    server_tls_protocols: ['sslv3', 'expected a comma-separated list of tlsv1.0, tlsv1.1, tlsv1.2, tlsv1.3, all, secure or legacy, got "sslv3"'],
    server_tls_ciphers: ['', 'expected a non-empty string, got ""'],
    auth_user: ['', 'expected a non-empty string, got ""'],
    auth_password: [123456, 'expected a string or null'],
    auth_password_file: [true, 'expected a string or null, got true'],
    auth_query: [{}, 'expected a non-empty string, got {}'],
    auth_dbname: [1, 'expected a string or null, got 1'],
    auth_file: [1, 'expected a string or null, got 1'],
    auth_cache_ttl: [-1, 'expected a number of seconds >= 0, got -1'],
    auth_cache_size: [0, 'expected an integer >= 1, got 0'],
    auth_max_concurrent_lookups: [1.5, 'expected an integer >= 1, got 1.5'],
    auth_failure_limit: [-1, 'expected an integer >= 0, got -1'],
    auth_failure_window: ['1m', 'expected a number of seconds >= 0, got "1m"'],
    auth_failure_block: [-2, 'expected a number of seconds >= 0, got -2'],
    allow_superuser: ['maybe', 'expected a boolean'],
    pool_mode: ['txn', 'expected one of session, transaction, statement, got "txn"'],
    default_pool_size: [0, 'expected an integer >= 1, got 0'],
    min_pool_size: [1.5, 'expected an integer >= 0, got 1.5'],
    reserve_pool_size: ['x', 'expected an integer >= 0, got "x"'],
    reserve_pool_timeout: ['soon', 'expected a number of seconds >= 0, got "soon"'],
    max_client_conn: [0, 'expected an integer >= 1, got 0'],
    max_db_connections: [-1, 'expected an integer >= 0, got -1'],
    max_user_connections: [null, 'expected an integer >= 0, got null'],
    max_db_client_connections: [-1, 'expected an integer >= 0, got -1'],
    max_user_client_connections: ['lots', 'expected an integer >= 0, got "lots"'],
    server_reset_query: [null, 'expected a string, got null'],
    server_reset_query_always: [2, 'expected a boolean'],
    server_check_query: [1, 'expected a string, got 1'],
    server_check_delay: ['1m', 'expected a number of seconds >= 0, got "1m"'],
    server_lifetime: [-5, 'expected a number of seconds >= 0'],
    server_idle_timeout: [[1], 'expected a number of seconds >= 0'],
    server_connect_timeout: [false, 'expected a number of seconds >= 0, got false'],
    server_login_retry: ['', 'expected a number of seconds >= 0, got ""'],
    query_timeout: ['1s', 'expected a number of seconds >= 0'],
    query_wait_timeout: [-0.5, 'expected a number of seconds >= 0'],
    client_idle_timeout: [{ a: 1 }, 'expected a number of seconds >= 0'],
    client_login_timeout: ['∞', 'expected a number of seconds >= 0'],
    shutdown_timeout: ['soon', 'expected a number of seconds >= 0, got "soon"'],
    max_pending_logins: [-1, 'expected an integer >= 0, got -1'],
    tcp_keepalive: ['sometimes', 'expected a boolean'],
    tcp_keepidle: [-5, 'expected a number of seconds >= 0, got -5'],
    idle_transaction_timeout: [null, 'expected a number of seconds >= 0, got null'],
    max_prepared_statements: [-1, 'expected an integer >= 0, got -1'],
    max_client_prepared_statements: [0, 'expected an integer >= 1, got 0'],
    max_client_prepared_bytes: [100, 'expected an integer >= 1024, got 100'],
    autodb_idle_timeout: [-1, 'expected a number of seconds >= 0, got -1'],
    ignore_startup_parameters: [[1, 2], 'expected a list of strings or a comma-separated string, got [1,2]'],
    track_extra_parameters: [7, 'expected a list of strings or a comma-separated string, got 7'],
    max_packet_size: [100, 'expected an integer from 1024 to 2147483647, got 100'],
    workers: [200, 'expected an integer from 0 to 126, got 200'],
    metrics_listen_addr: ['', 'expected one host name or IP address'],
    metrics_port: ['on', 'expected an integer from 0 to 65535, or off, got "on"'],
    metrics_auth_token: [7, 'expected a string or null'], // a secret: the value is not quoted
    metrics_auth_token_file: [[], 'expected a string or null, got []'],
    admin_users: [3, 'expected a list of strings or a comma-separated string, got 3'],
    stats_users: [{}, 'expected a list of strings or a comma-separated string, got {}'],
    log_level: ['verbose', 'expected one of trace, debug, info, warn, error, fatal, silent, got "verbose"'],
    log_format: ['xml', 'expected one of text, json, auto, got "xml"'],
    log_connections: ['maybe', 'expected a boolean (true/false, yes/no, on/off, 1/0), got "maybe"'],
    log_disconnections: [2, 'expected a boolean (true/false, yes/no, on/off, 1/0), got 2'],
    log_pooler_errors: ['', 'expected a boolean (true/false, yes/no, on/off, 1/0), got ""'],
    log_stats: [[], 'expected a boolean (true/false, yes/no, on/off, 1/0), got []'],
    stats_period: [0, 'expected an integer >= 1, got 0'],
  };

  test('the table covers every scalar key', () => {
    expect(Object.keys(bad).sort()).toEqual([...SCALAR_KEYS].sort());
  });

  test.each(Object.entries(bad))('%s', (key, [value, message]) => {
    const path = file(`${key}.yaml`, JSON.stringify({ [key]: value }));
    const err = configError(() => loadConfig({ file: path, env: {} }));
    expect(err).toContain(`${path}: ${key}: ${message}`);
  });

  test('all problems are reported at once, one per line', () => {
    const { path, load } = fromYaml('listen_port: x\npool_mode: y\n');
    const lines = configError(load).split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(new RegExp(`^${path}: listen_port: `));
    expect(lines[1]).toMatch(new RegExp(`^${path}: pool_mode: `));
  });

  test('ConfigError carries a stable code and the problem list', () => {
    let err: unknown;
    try {
      loadConfig({ env: {}, overrides: { listen_port: 'x' } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('CONFIG_INVALID');
    expect((err as ConfigError).problems).toEqual(['overrides: listen_port: expected an integer from 0 to 65535, got "x"']);
  });
});

describe('file problems', () => {
  test('an unknown key is named, with the nearest known key', () => {
    const { path, load } = fromYaml('listen_prot: 7000\n');
    expect(configError(load)).toBe(`${path}: listen_prot: unknown key (did you mean listen_port?)`);
  });

  test('an unknown key far from any known key gets no suggestion', () => {
    const { path, load } = fromYaml('frobnicate: 1\n');
    expect(configError(load)).toBe(`${path}: frobnicate: unknown key`);
  });

  test('PgBouncer settings without an effect here are accepted with a notice (test/unit/config/compat.test.ts has them all)', () => {
    const { load } = fromYaml('auth_type: trust\n');
    expect(load().notices).toEqual([expect.stringMatching(/auth_type: accepted, has no effect in pg-ingress: /)]);
  });

  test('a missing file names the path', () => {
    expect(configError(() => loadConfig({ file: '/nonexistent/pg-ingress.yaml', env: {} }))).toBe(
      '/nonexistent/pg-ingress.yaml: cannot read the configuration file: ENOENT',
    );
  });

  test('a YAML syntax error names the file and line but not the source text', () => {
    const { path, load } = fromYaml('listen_port: 1\nauth_password: "hunter2\n');
    const err = configError(load);
    expect(err.startsWith(`${path}: `)).toBe(true);
    expect(err).toMatch(/line \d+/);
    expect(err).not.toContain('hunter2');
  });

  test('duplicate keys are an error', () => {
    const { load } = fromYaml('listen_port: 1\nlisten_port: 2\n');
    expect(configError(load)).toMatch(/unique/);
  });

  test('the top level must be a mapping', () => {
    const { path, load } = fromYaml('- a\n- b\n');
    expect(configError(load)).toBe(`${path}: expected a mapping of settings at the top level`);
  });
});

describe('value forms', () => {
  test('lists are YAML lists or comma-separated strings', () => {
    const a = loadConfig({ env: {}, overrides: { ignore_startup_parameters: 'extra_float_digits, search_path,,', track_extra_parameters: ['IntervalStyle'] } });
    expect(a.ignore_startup_parameters).toEqual(['extra_float_digits', 'search_path']);
    expect(a.track_extra_parameters).toEqual(['IntervalStyle']);
    expect(loadConfig({ env: {}, overrides: { ignore_startup_parameters: '' } }).ignore_startup_parameters).toEqual([]);
  });

  test.each([
    ['true', true], ['YES', true], ['on', true], ['1', true], [1, true],
    ['false', false], ['no', false], ['Off', false], ['0', false], [0, false],
  ])('boolean %j', (value, expected) => {
    expect(loadConfig({ env: {}, overrides: { allow_superuser: value } }).allow_superuser).toBe(expected);
  });

  test('durations may be fractional seconds', () => {
    const c = loadConfig({ env: {}, overrides: { query_wait_timeout: 0.25, server_idle_timeout: '1.5' } });
    expect(c.query_wait_timeout).toBe(0.25);
    expect(c.server_idle_timeout).toBe(1.5);
  });

  test("listen_addr '*' means all IPv4 addresses", () => {
    expect(loadConfig({ env: {}, overrides: { listen_addr: '*' } }).listen_addr).toBe('0.0.0.0');
  });

  test.each([
    ['tlsv1.3', 'tlsv1.3'], ['secure', 'tlsv1.2'], ['tlsv1.2,tlsv1.3', 'tlsv1.2'], ['TLSv1.3', 'tlsv1.3'],
  ])('client_tls_protocols %s is minimum %s', (value, expected) => {
    expect(loadConfig({ env: {}, overrides: { client_tls_protocols: value } }).client_tls_protocols).toBe(expected);
  });

  test('enums ignore case', () => {
    expect(loadConfig({ env: {}, overrides: { pool_mode: 'Transaction' } }).pool_mode).toBe('transaction');
  });

  test('a certificate without its key is an error', () => {
    expect(configError(() => loadConfig({ env: {}, overrides: { client_tls_cert_file: '/tls/tls.crt' } }))).toBe(
      'overrides: client_tls_cert_file: is set but client_tls_key_file is not; set both, or neither for a self-signed certificate',
    );
  });
});

describe('the result', () => {
  test('is deeply frozen', () => {
    const c = loadConfig({ env: {}, overrides: { databases: { app: 'host=db' }, users: { bob: {} } } });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.databases)).toBe(true);
    expect(Object.isFrozen(c.databases.app)).toBe(true);
    expect(Object.isFrozen(c.users.bob)).toBe(true);
    expect(Object.isFrozen(c.ignore_startup_parameters)).toBe(true);
    expect(() => {
      (c as { listen_port: number }).listen_port = 1;
    }).toThrow(TypeError);
    expect(() => {
      (c.databases.app as { port: number }).port = 1;
    }).toThrow(TypeError);
  });

  test('database and user maps have no prototype, so client names like "constructor" miss', () => {
    const c = loadConfig({ env: {}, overrides: { databases: { app: 'host=db' } } });
    expect(c.databases['constructor']).toBeUndefined();
    expect(c.databases['toString']).toBeUndefined();
    expect(c.users['hasOwnProperty']).toBeUndefined();
  });
});
