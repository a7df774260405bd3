// pgbouncer.ini read as PgBouncer 1.25 reads it (cfparser.c, loader.c), checked
// against PgBouncer's own example file (ini-fixtures/, copied from its etc/).
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { loadConfig } from '../../../src/config/index.js';
import { isIniFile, MAX_INCLUDE_DEPTH, parseConnString, readPgBouncerIni } from '../../../src/config/ini.js';
import { configError, tempDir } from './helpers.js';

const file = tempDir();
const FIXTURES = join(import.meta.dirname, 'ini-fixtures');
const EXAMPLE = join(FIXTURES, 'pgbouncer-1.25.2.ini');
const values = (text: string, name = 'p.ini') => readPgBouncerIni(file(name, text)).values;

describe("PgBouncer's example file", () => {
  test('reads as PgBouncer reads it: only its uncommented lines (its [databases] and [users] are empty)', () => {
    expect(readPgBouncerIni(EXAMPLE).values).toEqual({
      logfile: '/var/log/pgbouncer/pgbouncer.log',
      pidfile: '/var/run/pgbouncer/pgbouncer.pid',
      listen_addr: 'localhost',
      listen_port: '6432',
      auth_type: 'md5',
      auth_file: '/etc/pgbouncer/userlist.txt',
    });
  });

  test('every example line, uncommented, parses; the [pgbouncer] ones load', () => {
    // ";key = value" lines are PgBouncer's documented examples; "<system default>" is a placeholder, not a path.
    const text = readFileSync(EXAMPLE, 'utf8')
      .split('\n')
      .map((l) => l.replace(/^; ?([a-z_0-9*]+ *=)/, '$1'))
      .filter((l) => !l.includes('<system default>'))
      .join('\n');
    const v = values(text);
    expect((v.databases as Record<string, unknown>).forcedb).toEqual({
      host: 'localhost',
      port: '300',
      user: 'baz',
      password: 'foo',
      client_encoding: 'UNICODE',
      datestyle: 'ISO',
      connect_query: 'SELECT 1',
    });
    expect((v.databases as Record<string, unknown>)['*']).toEqual({ host: 'testserver' });
    expect((v.users as Record<string, unknown>).user1).toEqual({ pool_size: '5', reserve_pool_size: '2', pool_mode: 'transaction', max_user_connections: '10', max_user_client_connections: '20' });
    expect(v.auth_query).toBe('SELECT rolname, CASE WHEN rolvaliduntil < pg_catalog.now() THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname=$1 AND rolcanlogin');

    // The [pgbouncer] section alone (the example databases include a forced user, refused by design).
    const settings = text.slice(text.indexOf('[pgbouncer]')).replace('auth_file = /etc/pgbouncer/userlist.txt', `auth_file = ${join(FIXTURES, 'userlist-1.25.2.txt')}`);
    const c = loadConfig({ file: file('settings.ini', settings), env: {} });
    expect(c.listen_addr).toBe('localhost');
    expect(c.admin_users).toEqual(['user2', 'someadmin', 'otheradmin']);
    expect(c.server_check_query).toBe('select 1');
    expect(c.notices.join('\n')).toContain('logfile: accepted, has no effect');
  });
});

describe('file syntax', () => {
  test("comments start a line with ';' or '#'; later on a line they are part of the value", () => {
    expect(values('# c\n  ; c\n[pgbouncer]\nauth_query = SELECT 1; -- #x\nlisten_port=7000  \r\n')).toEqual({ auth_query: 'SELECT 1; -- #x', listen_port: '7000' });
  });

  test("database names: bare (letters, digits, _ . - *), single-quoted as cfparser does, double-quoted as the docs say", () => {
    const v = values(`[databases]\nmy.db-1 = host=a\n'my db' = host=b\n"it""s" = host=c\n* = host={db}-rw\n`);
    expect(Object.keys(v.databases as object)).toEqual(['my.db-1', 'my db', 'it"s', '*']);
  });

  test('a repeated key: the later line wins; a repeated database replaces the whole entry', () => {
    const v = values('[pgbouncer]\nlisten_port = 1\nlisten_port = 2\n[databases]\napp = host=a port=5\napp = host=b\n');
    expect(v.listen_port).toBe('2');
    expect((v.databases as Record<string, unknown>).app).toEqual({ host: 'b' });
  });

  test('a second [pgbouncer] header drops the settings before it, as PgBouncer resets them to defaults', () => {
    expect(values('[pgbouncer]\nlisten_port = 1\npool_mode = transaction\n[databases]\n[pgbouncer]\nlisten_port = 2\n')).toEqual({ listen_port: '2' });
  });

  test('syntax errors name the file and line, never the line itself', () => {
    const secret = 'hunter2';
    for (const [text, message] of [
      [`[pgbouncer]\nlisten_port 6432 ${secret}\n`, ':2: expected "=" after the key'],
      [`[pgbouncer]\n${secret}\n`, ':2: expected "=" after the key'], // a pasted password on a line of its own
      [`listen_port = ${secret}\n`, ':1: a setting comes before any [section]'],
      [`[pgbouncer\n`, ':1: a section header without its closing "]"'],
      [`[server]\n`, ':1: unknown section [server]'],
      [`[databases]\n'app = host=${secret}\n`, ':2: a quoted key without its closing quote'],
      [`[databases]\n= host=${secret}\n`, ':2: expected a key'],
    ] as const) {
      const msg = configError(() => values(text, 'bad.ini'));
      expect(msg).toContain(`bad.ini${message}`);
      expect(msg).not.toContain(secret);
    }
  });

  test('connection string errors name the entry, never the value', () => {
    const msg = configError(() => values("[databases]\napp = host=a password='hunter2\n", 'dsn.ini'));
    expect(msg).toMatch(/dsn\.ini:2: databases\.app: unterminated quoted value for "password"/);
    expect(msg).not.toContain('hunter2');
  });
});

describe('%include', () => {
  test('relative to the including file, nested, sharing the current section both ways', () => {
    mkdirSync(join(dirname(file('anchor', '')), 'inc'), { recursive: true });
    file('inc/deeper.ini', 'pool_mode = transaction\n[databases]\nfromdeep = host=d\n');
    file('inc/a.ini', 'listen_port = 7001\n%include deeper.ini\n');
    const main = file('main.ini', '[pgbouncer]\n%include inc/a.ini\nother = host=x\n');
    // After the include the section is still [databases], as in PgBouncer.
    expect(readPgBouncerIni(main).values).toEqual({ listen_port: '7001', pool_mode: 'transaction', databases: { fromdeep: { host: 'd' }, other: { host: 'x' } } });
  });

  test('a loop is an error naming the files, not a stack overflow', () => {
    file('loop-a.ini', '[pgbouncer]\n%include loop-b.ini\n');
    file('loop-b.ini', '%include loop-a.ini\n');
    expect(configError(() => readPgBouncerIni(file('loop-a.ini', '[pgbouncer]\n%include loop-b.ini\n')))).toMatch(/%include loop: .*loop-a\.ini includes .*loop-b\.ini includes .*loop-a\.ini/);
  });

  test(`nesting deeper than ${MAX_INCLUDE_DEPTH} files is an error, as in PgBouncer`, () => {
    for (let i = 0; i <= MAX_INCLUDE_DEPTH + 1; i++) file(`nest-${i}.ini`, `%include nest-${i + 1}.ini\n`);
    expect(configError(() => readPgBouncerIni(file('nest-0.ini', '[pgbouncer]\n%include nest-1.ini\n')))).toContain(`%include nested deeper than ${MAX_INCLUDE_DEPTH} files`);
    file(`nest-${MAX_INCLUDE_DEPTH}.ini`, 'listen_port = 1\n');
    expect(readPgBouncerIni(file('nest-0.ini', '[pgbouncer]\n%include nest-1.ini\n')).values).toEqual({ listen_port: '1' });
  });

  test('a missing included file is an error naming it', () => {
    expect(configError(() => values('[pgbouncer]\n%include nowhere.ini\n'))).toMatch(/nowhere\.ini: cannot read an included file: ENOENT/);
  });
});

describe('connection strings, as loader.c splits them', () => {
  test("pairs split at spaces; '' is a quote inside quotes; backslashes are literal; = and ; may be in values", () => {
    expect(parseConnString("host=db  port = 5432 auth_query='SELECT p FROM f($1) WHERE a = ''x;y''' dbname=a\\b")).toEqual({
      host: 'db',
      port: '5432',
      auth_query: "SELECT p FROM f($1) WHERE a = 'x;y'",
      dbname: 'a\\b',
    });
  });

  test('reserve_pool is the older name of reserve_pool_size; an empty string is an empty entry', () => {
    expect(parseConnString('reserve_pool=3')).toEqual({ reserve_pool_size: '3' });
    expect(parseConnString('')).toEqual({});
  });

  test('an empty value, a missing "=" or an open quote is an error', () => {
    for (const bad of ['host=', 'host', "host='a", '=a']) expect(() => parseConnString(bad)).toThrow();
  });
});

describe('which reader a --config file gets', () => {
  test('.ini is ini, .yaml/.yml/.json YAML; otherwise the first meaningful line decides', () => {
    expect(isIniFile('a.ini', 'listen_port: 1')).toBe(true);
    expect(isIniFile('a.yaml', '[pgbouncer]')).toBe(false);
    expect(isIniFile('pgbouncer.conf', '# x\n\n[databases]\n')).toBe(true);
    expect(isIniFile('config', ';; PgBouncer\n')).toBe(true);
    expect(isIniFile('config', '%include /etc/pgbouncer/base.ini\n')).toBe(true);
    expect(isIniFile('config', '# x\nlisten_port: 1\n')).toBe(false);
  });

  test('loadConfig reads an ini with the same validation and environment overrides as YAML', () => {
    const path = file('run.conf', '[databases]\napp = host=db port=5433 pool_mode=transaction\n[users]\nbatch = pool_size=3\n[pgbouncer]\nlisten_port = 7432\nmax_client_conn = x\n');
    expect(configError(() => loadConfig({ file: path, env: {} }))).toContain('run.conf:7: max_client_conn: expected an integer >= 1, got "x"');
    const c = loadConfig({ file: path, env: { PG_INGRESS_MAX_CLIENT_CONN: '50', PG_INGRESS_LISTEN_PORT: '7555' } });
    expect([c.listen_port, c.max_client_conn]).toEqual([7555, 50]);
    expect(c.databases.app).toMatchObject({ host: 'db', port: 5433, pool_mode: 'transaction' });
    expect(c.users.batch).toMatchObject({ pool_size: 3 });
  });

  test('a database entry named __proto__ is refused, as from YAML', () => {
    expect(configError(() => loadConfig({ file: file('proto.ini', '[databases]\n__proto__ = host=a\n'), env: {} }))).toContain('"__proto__" is not a usable name');
  });
});
