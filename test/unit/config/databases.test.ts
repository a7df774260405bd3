import { describe, expect, test } from 'vitest';
import { loadConfig } from '../../../src/config/index.js';
import { configError, tempDir } from './helpers.js';

const file = tempDir();
const load = (yaml: string, env: Record<string, string> = {}) => loadConfig({ file: file('db.yaml', yaml), env });
const nulls = { dbname: null, user: null, pool_mode: null, pool_size: null, min_pool_size: null, reserve_pool_size: null, max_db_connections: null, max_db_client_connections: null, auth_dbname: null,
  auth_user: null, auth_query: null, connect_query: null, client_encoding: null, datestyle: null, timezone: null, server_lifetime: null, load_balance_hosts: 'round-robin' };

describe('databases', () => {
  test('DSN strings, with libpq quoting', () => {
    const c = load(String.raw`
databases:
  app: host=app-rw.db.svc port=5433 dbname=app_prod pool_mode=transaction pool_size=5 auth_dbname=postgres
  quoted: "host='my host' dbname='it\\'s'"
  limited: host=h min_pool_size=1 reserve_pool=2 max_db_connections=3 max_db_client_connections=40
`);
    expect(c.databases.app).toEqual({ name: 'app', host: 'app-rw.db.svc', port: 5433, ports: [5433], ...nulls, dbname: 'app_prod', pool_mode: 'transaction', pool_size: 5, auth_dbname: 'postgres' });
    // PgBouncer's per-database limits; reserve_pool is its older name of reserve_pool_size.
    expect(c.databases.limited).toEqual({ name: 'limited', host: 'h', port: 5432, ports: [5432], ...nulls, min_pool_size: 1, reserve_pool_size: 2, max_db_connections: 3, max_db_client_connections: 40 });
    expect(c.databases.quoted).toEqual({ name: 'quoted', host: 'my host', port: 5432, ports: [5432], ...nulls, dbname: "it's" });
  });

  test('object form with the same keys and defaults', () => {
    const c = load(`
databases:
  reports:
    host: reports-ro.db.svc
    pool_size: 3
  minimal: { host: h }
`);
    expect(c.databases.reports).toEqual({ name: 'reports', host: 'reports-ro.db.svc', port: 5432, ports: [5432], ...nulls, pool_size: 3 });
    expect(c.databases.minimal).toEqual({ name: 'minimal', host: 'h', port: 5432, ports: [5432], ...nulls });
  });

  test("the '*' fallback entry with a {db} host template", () => {
    const c = load('databases:\n  "*": host={db}-rw.databases.svc\n');
    expect(c.databases['*']).toEqual({ name: '*', host: '{db}-rw.databases.svc', port: 5432, ports: [5432], ...nulls });
  });

  test('an unknown template is an error', () => {
    expect(configError(() => load('databases:\n  "*": host={database}-rw\n'))).toMatch(/databases\.\*\.host: expected a host name/);
  });

  test('a host list, with one port for all or one per host (load_balance_hosts)', () => {
    expect(load('databases:\n  a: host=h1,h2 load_balance_hosts=disable\n').databases.a).toMatchObject({ host: 'h1,h2', port: 5432, ports: [5432], load_balance_hosts: 'disable' });
    expect(load('databases:\n  a: host=h1,h2 port=5433,5434\n').databases.a).toMatchObject({ host: 'h1,h2', port: 5433, ports: [5433, 5434], load_balance_hosts: 'round-robin' });
    expect(configError(() => load('databases:\n  a: host=h1,h2,h3 port=1,2\n'))).toMatch(/databases\.a\.port: 2 ports for 3 hosts/);
    expect(configError(() => load('databases:\n  a: host=h1,,h2\n'))).toMatch(/databases\.a\.host: expected a host name/);
    expect(configError(() => load('databases:\n  a: host=h load_balance_hosts=random\n'))).toMatch(/databases\.a\.load_balance_hosts: expected one of disable, round-robin/);
  });

  test("PgBouncer's per-database keys", () => {
    const c = load(String.raw`
databases:
  app: host=h auth_user=other auth_query='SELECT u, p FROM f($1)' connect_query='SET x.y = 1' client_encoding=LATIN1 datestyle='ISO, DMY' timezone=UTC server_lifetime=30
`);
    expect(c.databases.app).toMatchObject({ auth_user: 'other', auth_query: 'SELECT u, p FROM f($1)', connect_query: 'SET x.y = 1', client_encoding: 'LATIN1', datestyle: 'ISO, DMY', timezone: 'UTC', server_lifetime: 30 });
  });

  test('a bad DSN value names the file and the key path', () => {
    const path = file('bad.yaml', 'databases:\n  app: host=db port=abc\n');
    expect(configError(() => loadConfig({ file: path, env: {} }))).toBe(
      `${path}: databases.app.port: expected an integer from 1 to 65535, got "abc"`,
    );
  });

  test('an unknown DSN key names the entry and lists the known keys', () => {
    const err = configError(() => load("databases:\n  app: host=db bogus_key='select 1'\n"));
    expect(err).toMatch(/databases\.app: unknown key "bogus_key"; known keys: host, port, dbname, user, pool_mode, pool_size, min_pool_size, reserve_pool_size, max_db_connections, max_db_client_connections, auth_dbname/);
  });

  test('an unknown object key lists the known keys', () => {
    expect(configError(() => load('databases:\n  app: { host: h, bogus_key: x }\n'))).toMatch(
      /databases\.app\.bogus_key: unknown key; known keys: host, port,/,
    );
  });

  test('host is required', () => {
    expect(configError(() => load('databases:\n  app: port=5432\n'))).toMatch(/databases\.app\.host: is required/);
  });

  test('a value that is neither string nor mapping', () => {
    expect(configError(() => load('databases:\n  app: 5\n'))).toMatch(/databases\.app: expected a mapping, got a number/);
    expect(configError(() => load('databases: [a]\n'))).toMatch(/: databases: expected a mapping, got a list/);
  });

  test("user= (PgBouncer's forced server user) is refused, naming the file and the key, in both forms", () => {
    const dsn = file('forced.yaml', 'databases:\n  app: host=h dbname=app user=svc\n');
    const err = configError(() => loadConfig({ file: dsn, env: {} }));
    expect(err).toBe(
      `${dsn}: databases.app.user: a forced server user is not supported: pg-ingress logs in upstream as each client's own user with that client's credentials (auth pass-through), so it has no stored password for any other user; remove it`,
    );
    const object = file('forced-object.yaml', 'databases:\n  reports:\n    host: h\n    user: svc\n');
    expect(configError(() => loadConfig({ file: object, env: {} }))).toMatch(
      new RegExp(`^${object.replaceAll('.', '\\.')}: databases\\.reports\\.user: a forced server user is not supported: .*auth pass-through`),
    );
    // The '*' fallback too, and an empty value counts as unset.
    expect(configError(() => load('databases:\n  "*": host={db}-rw user=svc\n'))).toMatch(/databases\.\*\.user: a forced server user is not supported/);
    expect(load("databases:\n  app: host=h user=''\n").databases.app?.user).toBeNull();
  });

  test('password= is refused in both forms with the reason, never quoting the value', () => {
    const dsn = configError(() => load("databases:\n  app: host=h password='pw-77x'\n"));
    expect(dsn).toMatch(/databases\.app: "password" is not supported: pg-ingress logs in upstream as each client's own user .*auth pass-through.*; remove it/);
    expect(dsn).not.toContain('pw-77x');
    const object = configError(() => load('databases:\n  app: { host: h, password: pw-77x }\n'));
    expect(object).toMatch(/databases\.app\.password: unknown key: a stored password is not supported: .*auth pass-through/);
    expect(object).not.toContain('pw-77x');
  });

  test('auth_user in a DSN is that database\'s own', () => {
    expect(load('databases:\n  app: host=h auth_user=other\n').databases.app?.auth_user).toBe('other');
    expect(load('databases:\n  app: host=h\n').databases.app?.auth_user).toBeNull();
  });

  test('"__proto__" is not a usable name', () => {
    expect(configError(() => load('databases:\n  __proto__: host=h\n'))).toMatch(/databases: "__proto__" is not a usable name/);
  });

  test('a DSN string where a map belongs is not echoed', () => {
    const err = configError(() => load("databases: host=h password='pa55word'\n"));
    expect(err).toMatch(/: databases: expected a mapping, got a string/);
    expect(err).not.toContain('pa55word');
  });

  test('a password in a DSN is refused and never echoed', () => {
    const err = configError(() => load("databases:\n  app: host=h password='pa55word'\n"));
    expect(err).toMatch(/databases\.app: "password" is not supported/);
    expect(err).not.toContain('pa55word');
  });
});

describe('users', () => {
  test('objects with pool overrides; an empty entry is allowed', () => {
    const c = load('users:\n  batch: { pool_mode: session, pool_size: 2, max_user_connections: 10, max_user_client_connections: 50 }\n  alice:\n');
    expect(c.users.batch).toEqual({ name: 'batch', pool_mode: 'session', pool_size: 2, max_user_connections: 10, max_user_client_connections: 50 });
    expect(c.users.alice).toEqual({ name: 'alice', pool_mode: null, pool_size: null, max_user_connections: null, max_user_client_connections: null });
  });

  test('errors name the user and key', () => {
    expect(configError(() => load('users:\n  bob: { pool_mode: fast }\n'))).toMatch(
      /users\.bob\.pool_mode: expected one of session, transaction, statement, got "fast"/,
    );
    expect(configError(() => load('users:\n  bob: { pool_sise: 1 }\n'))).toMatch(/users\.bob\.pool_sise: unknown key \(did you mean pool_size\?\)/);
    expect(configError(() => load('users:\n  bob: session\n'))).toMatch(/users\.bob: expected a mapping, got a string/);
  });
});
