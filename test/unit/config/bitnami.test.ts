// The Bitnami pgbouncer image's variables: one case per row of BITNAMI_VARIABLES,
// so a variable added to the table without a test fails here.
import { describe, expect, test } from 'vitest';
import { loadConfig, type Config } from '../../../src/config/index.js';
import { BITNAMI_VARIABLES } from '../../../src/config/env.js';
import { configError, tempDir } from './helpers.js';

const file = tempDir();
type Env = Record<string, string | undefined>;
const fromEnv = (env: Env): Config => loadConfig({ file: null, env });

const certs = { PGBOUNCER_CLIENT_TLS_CERT_FILE: '/tls/tls.crt', PGBOUNCER_CLIENT_TLS_KEY_FILE: '/tls/tls.key' };
// PgBouncer settings given this way (PGBOUNCER_AUTH_TYPE) also name their key.
const warning = (name: string) => new RegExp(`^${name}: ([a-z_]+: )?accepted, has no effect in pg-ingress: `);
const hasWarning = (c: Config, name: string): boolean => c.notices.some((n) => warning(name).test(n));

interface Case {
  env: Env;
  /** What the variable did to the configuration; throws when it did not. */
  check(c: Config): void;
  /** A value that asks for nothing: no warning, nothing changed. */
  inert?: string;
}

/** The variable sets `key` to `value`. */
const sets = (name: string, key: keyof Config, text: string, value: unknown, extra: Env = {}): Case => ({
  env: { [name]: text, ...extra },
  check: (c) => expect(c[key]).toEqual(value),
});
/** The variable is accepted with one warning naming it. */
const warns = (name: string, text: string, inert?: string): Case => ({
  env: { [name]: text },
  check: (c) => expect(c.notices.filter((n) => warning(name).test(n))).toHaveLength(1),
  inert,
});
const entry = (c: Config, name = 'postgres') => c.databases[name];

const CASES: Record<string, Case> = {
  PGBOUNCER_LOG_FILE: warns('PGBOUNCER_LOG_FILE', '/opt/bitnami/pgbouncer/logs/pgbouncer.log'),
  PGBOUNCER_DATABASE: { env: { PGBOUNCER_DATABASE: 'app' }, check: (c) => expect(entry(c, 'app')).toMatchObject({ host: 'postgresql', port: 5432, dbname: 'app' }) },
  PGBOUNCER_PORT: sets('PGBOUNCER_PORT', 'listen_port', '7432', 7432),
  PGBOUNCER_BIND_ADDRESS: sets('PGBOUNCER_BIND_ADDRESS', 'listen_addr', '10.0.0.1', '10.0.0.1'),
  PGBOUNCER_LISTEN_ADDRESS: sets('PGBOUNCER_LISTEN_ADDRESS', 'listen_addr', '*', '0.0.0.0'),
  PGBOUNCER_AUTH_USER: sets('PGBOUNCER_AUTH_USER', 'auth_user', 'pooler', 'pooler'),
  PGBOUNCER_AUTH_QUERY: sets('PGBOUNCER_AUTH_QUERY', 'auth_query', 'SELECT usename, passwd FROM pg_shadow WHERE usename=$1', 'SELECT usename, passwd FROM pg_shadow WHERE usename=$1'),
  PGBOUNCER_AUTH_TYPE: warns('PGBOUNCER_AUTH_TYPE', 'trust', 'scram-sha-256'),
  PGBOUNCER_AUTH_HBA_FILE: {
    env: {},
    check: () => expect(configError(() => fromEnv({ PGBOUNCER_AUTH_HBA_FILE: '/etc/hba' }))).toMatch(/^PGBOUNCER_AUTH_HBA_FILE: auth_hba_file: not supported: HBA rules/),
  },
  PGBOUNCER_AUTH_IDENT_FILE: warns('PGBOUNCER_AUTH_IDENT_FILE', '/etc/ident'),
  PGBOUNCER_STATS_USERS: sets('PGBOUNCER_STATS_USERS', 'stats_users', 'monitor, grafana', ['monitor', 'grafana']),
  PGBOUNCER_POOL_MODE: sets('PGBOUNCER_POOL_MODE', 'pool_mode', 'transaction', 'transaction'),
  PGBOUNCER_INIT_SLEEP_TIME: warns('PGBOUNCER_INIT_SLEEP_TIME', '30', '10'),
  PGBOUNCER_SERVER_FAST_CLOSE: warns('PGBOUNCER_SERVER_FAST_CLOSE', '1', '0'),
  PGBOUNCER_INIT_MAX_RETRIES: warns('PGBOUNCER_INIT_MAX_RETRIES', '3', '10'),
  PGBOUNCER_QUERY_WAIT_TIMEOUT: sets('PGBOUNCER_QUERY_WAIT_TIMEOUT', 'query_wait_timeout', '60', 60),
  PGBOUNCER_MAX_CLIENT_CONN: sets('PGBOUNCER_MAX_CLIENT_CONN', 'max_client_conn', '1000', 1000),
  PGBOUNCER_MAX_DB_CONNECTIONS: sets('PGBOUNCER_MAX_DB_CONNECTIONS', 'max_db_connections', '50', 50),
  PGBOUNCER_IDLE_TRANSACTION_TIMEOUT: sets('PGBOUNCER_IDLE_TRANSACTION_TIMEOUT', 'idle_transaction_timeout', '15.5', 15.5),
  PGBOUNCER_SERVER_IDLE_TIMEOUT: sets('PGBOUNCER_SERVER_IDLE_TIMEOUT', 'server_idle_timeout', '30', 30),
  PGBOUNCER_SERVER_RESET_QUERY: sets('PGBOUNCER_SERVER_RESET_QUERY', 'server_reset_query', 'RESET ALL', 'RESET ALL'),
  PGBOUNCER_DEFAULT_POOL_SIZE: sets('PGBOUNCER_DEFAULT_POOL_SIZE', 'default_pool_size', '30', 30),
  PGBOUNCER_MIN_POOL_SIZE: sets('PGBOUNCER_MIN_POOL_SIZE', 'min_pool_size', '2', 2),
  PGBOUNCER_RESERVE_POOL_SIZE: sets('PGBOUNCER_RESERVE_POOL_SIZE', 'reserve_pool_size', '3', 3),
  PGBOUNCER_RESERVE_POOL_TIMEOUT: sets('PGBOUNCER_RESERVE_POOL_TIMEOUT', 'reserve_pool_timeout', '1.5', 1.5),
  PGBOUNCER_IGNORE_STARTUP_PARAMETERS: sets('PGBOUNCER_IGNORE_STARTUP_PARAMETERS', 'ignore_startup_parameters', 'extra_float_digits,options', ['extra_float_digits', 'options']),
  PGBOUNCER_STATS_PERIOD: sets('PGBOUNCER_STATS_PERIOD', 'stats_period', '15', 15),
  PGBOUNCER_MAX_PREPARED_STATEMENTS: sets('PGBOUNCER_MAX_PREPARED_STATEMENTS', 'max_prepared_statements', '0', 0),
  PGBOUNCER_EXTRA_FLAGS: warns('PGBOUNCER_EXTRA_FLAGS', '--verbose'),
  PGBOUNCER_EXTRA_ARGS: warns('PGBOUNCER_EXTRA_ARGS', '--verbose'),
  PGBOUNCER_FAIL_ON_INVALID_DSN_FILE: warns('PGBOUNCER_FAIL_ON_INVALID_DSN_FILE', 'false', 'true'),
  PGBOUNCER_SERVER_ROUND_ROBIN: warns('PGBOUNCER_SERVER_ROUND_ROBIN', '1', '0'),
  PGBOUNCER_APPLICATION_NAME_ADD_HOST: warns('PGBOUNCER_APPLICATION_NAME_ADD_HOST', '1', '0'),
  PGBOUNCER_CLIENT_TLS_SSLMODE: sets('PGBOUNCER_CLIENT_TLS_SSLMODE', 'client_tls_sslmode', 'prefer', 'prefer'),
  PGBOUNCER_CLIENT_TLS_CA_FILE: warns('PGBOUNCER_CLIENT_TLS_CA_FILE', '/tls/ca.crt'),
  PGBOUNCER_CLIENT_TLS_CERT_FILE: sets('PGBOUNCER_CLIENT_TLS_CERT_FILE', 'client_tls_cert_file', '/tls/tls.crt', '/tls/tls.crt', certs),
  PGBOUNCER_CLIENT_TLS_KEY_FILE: sets('PGBOUNCER_CLIENT_TLS_KEY_FILE', 'client_tls_key_file', '/tls/tls.key', '/tls/tls.key', certs),
  PGBOUNCER_CLIENT_TLS_CIPHERS: warns('PGBOUNCER_CLIENT_TLS_CIPHERS', 'HIGH:!aNULL', 'fast'),
  PGBOUNCER_SERVER_TLS_SSLMODE: sets('PGBOUNCER_SERVER_TLS_SSLMODE', 'server_tls_sslmode', 'verify-full', 'verify-full'),
  PGBOUNCER_SERVER_TLS_CA_FILE: sets('PGBOUNCER_SERVER_TLS_CA_FILE', 'server_tls_ca_file', '/pg/ca.crt', '/pg/ca.crt'),
  PGBOUNCER_SERVER_TLS_CERT_FILE: sets('PGBOUNCER_SERVER_TLS_CERT_FILE', 'server_tls_cert_file', '/pg/client.crt', '/pg/client.crt'),
  PGBOUNCER_SERVER_TLS_KEY_FILE: sets('PGBOUNCER_SERVER_TLS_KEY_FILE', 'server_tls_key_file', '/pg/client.key', '/pg/client.key'),
  PGBOUNCER_SERVER_TLS_PROTOCOLS: sets('PGBOUNCER_SERVER_TLS_PROTOCOLS', 'server_tls_protocols', 'tlsv1.3', ['tlsv1.3']),
  PGBOUNCER_SERVER_TLS_CIPHERS: sets('PGBOUNCER_SERVER_TLS_CIPHERS', 'server_tls_ciphers', 'fast', 'fast'),
  PGBOUNCER_LOG_CONNECTIONS: sets('PGBOUNCER_LOG_CONNECTIONS', 'log_connections', '0', false),
  PGBOUNCER_LOG_DISCONNECTIONS: sets('PGBOUNCER_LOG_DISCONNECTIONS', 'log_disconnections', '0', false),
  PGBOUNCER_LOG_POOLER_ERRORS: sets('PGBOUNCER_LOG_POOLER_ERRORS', 'log_pooler_errors', 'no', false),
  PGBOUNCER_LOG_STATS: sets('PGBOUNCER_LOG_STATS', 'log_stats', '0', false),
  PGBOUNCER_SERVER_LIFETIME: sets('PGBOUNCER_SERVER_LIFETIME', 'server_lifetime', '60', 60),
  PGBOUNCER_SERVER_CONNECT_TIMEOUT: sets('PGBOUNCER_SERVER_CONNECT_TIMEOUT', 'server_connect_timeout', '5', 5),
  PGBOUNCER_SERVER_LOGIN_RETRY: sets('PGBOUNCER_SERVER_LOGIN_RETRY', 'server_login_retry', '0.5', 0.5),
  PGBOUNCER_CLIENT_LOGIN_TIMEOUT: sets('PGBOUNCER_CLIENT_LOGIN_TIMEOUT', 'client_login_timeout', '20', 20),
  PGBOUNCER_AUTODB_IDLE_TIMEOUT: sets('PGBOUNCER_AUTODB_IDLE_TIMEOUT', 'autodb_idle_timeout', '0', 0),
  PGBOUNCER_QUERY_TIMEOUT: sets('PGBOUNCER_QUERY_TIMEOUT', 'query_timeout', '300', 300),
  PGBOUNCER_CLIENT_IDLE_TIMEOUT: sets('PGBOUNCER_CLIENT_IDLE_TIMEOUT', 'client_idle_timeout', '900', 900),
  PGBOUNCER_TCP_KEEPALIVE: sets('PGBOUNCER_TCP_KEEPALIVE', 'tcp_keepalive', '0', false),
  PGBOUNCER_TCP_KEEPIDLE: sets('PGBOUNCER_TCP_KEEPIDLE', 'tcp_keepidle', '30', 30),
  POSTGRESQL_USERNAME: {
    env: { POSTGRESQL_USERNAME: 'pooler', POSTGRESQL_PASSWORD: 'pw' },
    check: (c) => expect(c).toMatchObject({ auth_user: 'pooler', auth_password: 'pw', admin_users: ['pooler'] }),
  },
  POSTGRESQL_PASSWORD: { env: { POSTGRESQL_PASSWORD: 'pw' }, check: (c) => expect(c).toMatchObject({ auth_user: 'postgres', auth_password: 'pw', admin_users: [] }) },
  POSTGRESQL_DATABASE: { env: { POSTGRESQL_DATABASE: 'app_prod' }, check: (c) => expect(entry(c)).toMatchObject({ dbname: 'app_prod', host: 'postgresql' }) },
  POSTGRESQL_HOST: { env: { POSTGRESQL_HOST: 'pg' }, check: (c) => expect(entry(c)).toMatchObject({ host: 'pg', port: 5432, dbname: 'postgres' }) },
  POSTGRESQL_PORT: { env: { POSTGRESQL_PORT: '5433' }, check: (c) => expect(entry(c)).toMatchObject({ host: 'postgresql', port: 5433 }) },
  PGBOUNCER_SET_DATABASE_USER: {
    env: { POSTGRESQL_HOST: 'pg', PGBOUNCER_SET_DATABASE_USER: 'no' },
    check: (c) => {
      expect(entry(c)?.user).toBeNull();
      expect(configError(() => fromEnv({ POSTGRESQL_HOST: 'pg', POSTGRESQL_USERNAME: 'app', PGBOUNCER_SET_DATABASE_USER: 'yes' }))).toMatch(
        /^PGBOUNCER_SET_DATABASE_USER: databases\.postgres\.user: a forced server user is not supported: .*auth pass-through/,
      );
    },
  },
  PGBOUNCER_SET_DATABASE_PASSWORD: {
    env: { POSTGRESQL_PASSWORD: 'x9y8', PGBOUNCER_SET_DATABASE_PASSWORD: 'no' },
    check: () => {
      const err = configError(() => fromEnv({ POSTGRESQL_PASSWORD: 'x9y8', PGBOUNCER_SET_DATABASE_PASSWORD: 'yes' }));
      expect(err).toMatch(/^PGBOUNCER_SET_DATABASE_PASSWORD: a stored server password is not supported/);
      expect(err).not.toContain('x9y8');
    },
  },
  PGBOUNCER_USERLIST: warns('PGBOUNCER_USERLIST', '"alice" "secret"'),
  PGBOUNCER_USERLIST_FILE: {
    env: { PGBOUNCER_USERLIST_FILE: file('userlist.txt', '"alice" "md545f2603610af569b6155c45067268c6b"\n'), PGBOUNCER_USERLIST: '"ignored" "x"' },
    check: (c) => {
      expect(c.auth_file_passwords).toEqual({ alice: 'md545f2603610af569b6155c45067268c6b' });
      expect(hasWarning(c, 'PGBOUNCER_USERLIST')).toBe(false); // the file is the userlist; no second warning
    },
  },
  PGBOUNCER_CONNECT_QUERY: {
    env: { PGBOUNCER_DATABASE: 'app', PGBOUNCER_CONNECT_QUERY: "SET search_path = 'app'" },
    check: (c) => expect(entry(c, 'app')).toMatchObject({ connect_query: "SET search_path = 'app'", host: 'postgresql' }),
  },
  PGBOUNCER_FORCE_INITSCRIPTS: warns('PGBOUNCER_FORCE_INITSCRIPTS', 'true', 'false'),
  PGBOUNCER_SOCKET_DIR: warns('PGBOUNCER_SOCKET_DIR', '/var/run/pgbouncer', '/tmp/'),
  PGBOUNCER_SOCKET_MODE: warns('PGBOUNCER_SOCKET_MODE', '0700', '0777'),
  PGBOUNCER_SOCKET_GROUP: warns('PGBOUNCER_SOCKET_GROUP', 'postgres'),
  PGBOUNCER_DAEMON_USER: warns('PGBOUNCER_DAEMON_USER', 'daemon', 'pgbouncer'),
  PGBOUNCER_DAEMON_GROUP: warns('PGBOUNCER_DAEMON_GROUP', 'daemon', 'pgbouncer'),
  'PGBOUNCER_DSN_0, PGBOUNCER_DSN_1, …': {
    env: { PGBOUNCER_DSN_0: 'app=host=app-rw port=5433 dbname=app_prod', PGBOUNCER_DSN_1: '*=host={db}-rw', PGBOUNCER_DSN_3: 'skipped=host=x' },
    check: (c) => {
      expect(Object.keys(c.databases).sort()).toEqual(['*', 'app']);
      expect(c.databases.app).toMatchObject({ host: 'app-rw', port: 5433, dbname: 'app_prod' });
      expect(c.databases['*']).toMatchObject({ host: '{db}-rw', dbname: null });
    },
  },
};

describe('every Bitnami variable', () => {
  test('has a case here', () => {
    expect(Object.keys(CASES).sort()).toEqual(BITNAMI_VARIABLES.map((v) => v.name).sort());
  });

  test.each(Object.keys(CASES))('%s', (name) => {
    const { env, check, inert } = CASES[name]!;
    check(fromEnv(env));
    if (inert !== undefined) {
      const c = fromEnv({ [name]: inert });
      expect(c.notices).toEqual([]);
      expect(c).toEqual(fromEnv({}));
    }
  });

  test('a warning names the variable that came from a file', () => {
    const c = fromEnv({ PGBOUNCER_EXTRA_FLAGS_FILE: file('flags', '-v\n') });
    expect(hasWarning(c, 'PGBOUNCER_EXTRA_FLAGS_FILE')).toBe(true);
  });
});

describe('the auth user', () => {
  test('PGBOUNCER_AUTH_USER wins; POSTGRESQL_PASSWORD is its password only when POSTGRESQL_USERNAME names it', () => {
    expect(fromEnv({ PGBOUNCER_AUTH_USER: 'pgbouncer', POSTGRESQL_USERNAME: 'pgbouncer', POSTGRESQL_PASSWORD: 'pw' })).toMatchObject({ auth_user: 'pgbouncer', auth_password: 'pw' });
    expect(fromEnv({ PGBOUNCER_AUTH_USER: 'pgbouncer', POSTGRESQL_USERNAME: 'app', POSTGRESQL_PASSWORD: 'pw' })).toMatchObject({ auth_user: 'pgbouncer', auth_password: null, admin_users: ['app'] });
    expect(fromEnv({ PGBOUNCER_AUTH_USER: 'pgbouncer', POSTGRESQL_PASSWORD: 'pw' })).toMatchObject({ auth_user: 'pgbouncer', auth_password: null });
    expect(fromEnv({ PGBOUNCER_AUTH_USER: 'postgres', POSTGRESQL_PASSWORD: 'pw' })).toMatchObject({ auth_user: 'postgres', auth_password: 'pw' });
  });

  test('POSTGRESQL_USERNAME alone is the auth user, without a password', () => {
    expect(fromEnv({ POSTGRESQL_USERNAME: 'pooler' })).toMatchObject({ auth_user: 'pooler', auth_password: null });
  });

  test('POSTGRESQL_PASSWORD_FILE (a mounted Secret)', () => {
    const path = file('pgpw', 'from-file\n');
    expect(fromEnv({ POSTGRESQL_USERNAME: 'pgbouncer', POSTGRESQL_PASSWORD_FILE: path }).auth_password).toBe('from-file');
    expect(configError(() => fromEnv({ POSTGRESQL_PASSWORD_FILE: '/nonexistent/pw' }))).toBe('POSTGRESQL_PASSWORD_FILE: cannot read "/nonexistent/pw": ENOENT');
  });

  test('PG_INGRESS_AUTH_USER and PG_INGRESS_AUTH_PASSWORD win over both', () => {
    const c = fromEnv({ POSTGRESQL_PASSWORD: 'pw', PG_INGRESS_AUTH_USER: 'pgbouncer', PG_INGRESS_AUTH_PASSWORD: 'other' });
    expect(c).toMatchObject({ auth_user: 'pgbouncer', auth_password: 'other' });
  });

  test('the password never appears in an error', () => {
    const err = configError(() => fromEnv({ POSTGRESQL_PASSWORD: 'hunter2-bitnami', PGBOUNCER_PORT: 'x' }));
    expect(err).toBe('PGBOUNCER_PORT: listen_port: expected an integer from 0 to 65535, got "x"');
  });
});

describe('the image\'s database entry', () => {
  test('PGBOUNCER_DATABASE with POSTGRESQL_HOST/PORT/DATABASE', () => {
    const c = fromEnv({ PGBOUNCER_DATABASE: 'app', POSTGRESQL_HOST: 'pg', POSTGRESQL_PORT: '5433', POSTGRESQL_DATABASE: 'app_prod' });
    expect(Object.keys(c.databases)).toEqual(['app']);
    expect(c.databases.app).toMatchObject({ host: 'pg', port: 5433, dbname: 'app_prod', user: null, connect_query: null });
  });

  test("'*' is the fallback entry: the requested name goes on, POSTGRESQL_DATABASE is not used", () => {
    expect(fromEnv({ PGBOUNCER_DATABASE: '*', POSTGRESQL_HOST: 'pg', POSTGRESQL_DATABASE: 'ignored' }).databases['*']).toMatchObject({ host: 'pg', dbname: null });
  });

  test('no variable of it set: no entry (the image would point postgres at postgresql:5432)', () => {
    expect(fromEnv({ PGBOUNCER_PORT: '7432' }).databases).toEqual({});
  });

  test('a DSN of the same name replaces it; a bad POSTGRESQL_PORT names that variable', () => {
    expect(fromEnv({ PGBOUNCER_DATABASE: 'app', POSTGRESQL_HOST: 'a', PGBOUNCER_DSN_0: 'app=host=b' }).databases.app?.host).toBe('b');
    expect(configError(() => fromEnv({ POSTGRESQL_HOST: 'pg', POSTGRESQL_PORT: 'x' }))).toBe('POSTGRESQL_PORT: databases.postgres.port: expected an integer from 1 to 65535, got "x"');
  });

  test('entries from the environment replace the file\'s map', () => {
    const path = file('dbs.yaml', 'databases:\n  keep: host=k\n');
    expect(Object.keys(loadConfig({ file: path, env: { POSTGRESQL_HOST: 'pg' } }).databases)).toEqual(['postgres']);
  });
});

describe('PGBOUNCER_DSN_<n>', () => {
  test('from a file, and errors that name the variable without echoing the value', () => {
    expect(fromEnv({ PGBOUNCER_DSN_0_FILE: file('dsn0', 'app=host=from-file\n') }).databases.app?.host).toBe('from-file');
    expect(configError(() => fromEnv({ PGBOUNCER_DSN_0: 'host-without-name secret-ish' }))).toBe('PGBOUNCER_DSN_0: expected "<database>=host=… port=… dbname=…"');
    expect(configError(() => fromEnv({ PGBOUNCER_DSN_0: "app=host=h password='x9y8'" }))).not.toContain('x9y8');
    expect(configError(() => fromEnv({ PGBOUNCER_DSN_0: 'app=host=h user=svc' }))).toMatch(/^PGBOUNCER_DSN_0: databases\.app\.user: a forced server user is not supported/);
  });

  test('an unreadable DSN file is an error even where the image would only warn', () => {
    expect(configError(() => fromEnv({ PGBOUNCER_DSN_0_FILE: '/nonexistent/dsn', PGBOUNCER_FAIL_ON_INVALID_DSN_FILE: 'false' }))).toBe(
      'PGBOUNCER_DSN_0_FILE: cannot read "/nonexistent/dsn": ENOENT',
    );
  });
});

describe('what the image does not have', () => {
  test('PGBOUNCER_<KEY> for one of our settings warns with the PG_INGRESS_ name, and is not read', () => {
    const c = fromEnv({ PGBOUNCER_MAX_USER_CONNECTIONS: '40', PGBOUNCER_ADMIN_USERS: 'ops' });
    expect(c.max_user_connections).toBe(0);
    expect(c.admin_users).toEqual([]);
    expect(c.notices).toEqual([
      'PGBOUNCER_MAX_USER_CONNECTIONS: not read: the Bitnami image has no such variable; set PG_INGRESS_MAX_USER_CONNECTIONS instead',
      'PGBOUNCER_ADMIN_USERS: not read: the Bitnami image has no such variable; set PG_INGRESS_ADMIN_USERS instead',
    ]);
  });

  test("Kubernetes' service-link variables are left alone; a tcp:// port is ignored with a warning that says where it came from", () => {
    const links = { PGBOUNCER_SERVICE_HOST: '10.0.0.9', PGBOUNCER_SERVICE_PORT: '6432', PGBOUNCER_PORT_6432_TCP: 'tcp://10.0.0.9:6432' };
    expect(fromEnv(links)).toEqual(fromEnv({}));
    const c = fromEnv({ ...links, PGBOUNCER_PORT: 'tcp://10.0.0.9:6432', POSTGRESQL_PORT: 'tcp://10.0.0.8:5432' });
    expect(c.listen_port).toBe(6432);
    expect(c.notices).toEqual([
      expect.stringMatching(/^PGBOUNCER_PORT: ignored: "tcp:\/\/10\.0\.0\.9:6432" is what Kubernetes sets beside a Service named pgbouncer \(service links\)/),
      expect.stringMatching(/^POSTGRESQL_PORT: ignored: .* a Service named postgresql/),
    ]);
    // Above all, the file's databases stay: POSTGRESQL_PORT from a service link does not add the image's entry.
    const path = file('links.yaml', 'databases:\n  app: host=app-rw\n');
    expect(Object.keys(loadConfig({ file: path, env: { POSTGRESQL_PORT: 'tcp://10.0.0.8:5432' } }).databases)).toEqual(['app']);
    expect(fromEnv({ POSTGRESQL_HOST: 'pg', POSTGRESQL_PORT: 'tcp://10.0.0.8:5432' }).databases.postgres?.port).toBe(5432);
  });

  test('PgBouncer settings given through the image keep their own refusals', () => {
    expect(configError(() => fromEnv({ PGBOUNCER_AUTH_TYPE: 'hba' }))).toMatch(/^PGBOUNCER_AUTH_TYPE: auth_type: "hba" is not supported: HBA rules/);
    expect(configError(() => fromEnv({ PGBOUNCER_AUTH_TYPE: 'cert' }))).toMatch(/^PGBOUNCER_AUTH_TYPE: auth_type: "cert" is not supported/);
    expect(configError(() => fromEnv({ PGBOUNCER_CLIENT_TLS_SSLMODE: 'verify-full' }))).toBe(
      'PGBOUNCER_CLIENT_TLS_SSLMODE: client_tls_sslmode: expected one of disable, allow, prefer, require, got "verify-full"',
    );
    expect(fromEnv({ PGBOUNCER_AUTH_TYPE: 'md5' }).notices).toEqual([]);
  });
});
