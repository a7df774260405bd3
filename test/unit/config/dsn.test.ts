import { describe, expect, test } from 'vitest';
import { DSN_KEYS, DsnError, parseDsn } from '../../../src/config/dsn.js';

describe('parseDsn', () => {
  test('reads key=value pairs separated by whitespace', () => {
    expect(parseDsn('host=db.svc port=5433 dbname=app user=svc pool_mode=transaction pool_size=7 auth_dbname=postgres')).toEqual({
      host: 'db.svc',
      port: '5433',
      dbname: 'app',
      user: 'svc',
      pool_mode: 'transaction',
      pool_size: '7',
      auth_dbname: 'postgres',
    });
  });

  test('allows spaces around "=" and leading/trailing whitespace, as libpq does', () => {
    expect(parseDsn('  host = db \t port=\n5432  ')).toEqual({ host: 'db', port: '5432' });
  });

  test('empty string gives no keys', () => {
    expect(parseDsn('')).toEqual({});
    expect(parseDsn('   ')).toEqual({});
  });

  test("single-quoted values keep spaces and honour \\' and \\\\", () => {
    expect(parseDsn(String.raw`host='my host' dbname='it\'s' user='back\\slash'`)).toEqual({
      host: 'my host',
      dbname: "it's",
      user: 'back\\slash',
    });
  });

  test('an empty quoted value is an empty string', () => {
    expect(parseDsn("host=h dbname=''")).toEqual({ host: 'h', dbname: '' });
  });

  test('a backslash escapes the next character outside quotes too', () => {
    expect(parseDsn(String.raw`host=a\ b dbname=x\\y`)).toEqual({ host: 'a b', dbname: 'x\\y' });
  });

  test('keeps the {db} host template for the router', () => {
    expect(parseDsn('host={db}-rw.databases.svc')).toEqual({ host: '{db}-rw.databases.svc' });
  });

  test('parses user= so that loading can refuse it by name (see databases.test.ts)', () => {
    expect(parseDsn('host=h user=svc')).toEqual({ host: 'h', user: 'svc' });
  });

  test('accepts auth_user for pgbouncer.ini compatibility', () => {
    expect(parseDsn('host=h auth_user=pgbouncer')).toEqual({ host: 'h', auth_user: 'pgbouncer' });
  });

  test('an unknown key is an error that names it and lists the known keys', () => {
    expect(() => parseDsn("host=h bogus_key='SELECT 1'")).toThrow(DsnError);
    expect(() => parseDsn("host=h bogus_key='SELECT 1'")).toThrow(
      `unknown key "bogus_key"; known keys: ${DSN_KEYS.join(', ')}`,
    );
  });

  test('password= is refused without echoing the value', () => {
    let message = '';
    try {
      parseDsn("host=h password='s3cr3t-value'");
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/"password" is not supported: .*auth pass-through/);
    expect(message).not.toContain('s3cr3t');
  });

  test('an unterminated quote names the key, not the value', () => {
    expect(() => parseDsn("host=h user='abc")).toThrow('unterminated quoted value for "user"');
    try {
      parseDsn("host=h user='topsecret");
    } catch (e) {
      expect((e as Error).message).not.toContain('topsecret');
    }
  });

  test('a key without "=" is an error', () => {
    expect(() => parseDsn('host=h port')).toThrow('missing "=" after "port"');
    expect(() => parseDsn('=x')).toThrow('empty key');
  });

  test('a key given twice is an error', () => {
    expect(() => parseDsn('host=a host=b')).toThrow('"host" is given twice');
  });
});
