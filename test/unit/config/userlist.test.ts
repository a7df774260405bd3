// auth_file (userlist.txt) as PgBouncer's load_auth_file() reads it, and what
// loadConfig takes from it: auth_user's password, and notices that name no secret.
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { loadConfig } from '../../../src/config/index.js';
import { parseUserlist, readUserlist, secretKind } from '../../../src/config/userlist.js';
import { configError, tempDir } from './helpers.js';

const file = tempDir();
const SCRAM = 'SCRAM-SHA-256$4096:c2FsdHNhbHQ=$3Kk/UWhXKPQEbLwIsBNNTAQCjYCfLmn4eTG9YiM7NKY=:0f0hP8rFvK5bKXL8bSqkGaFLXIYV5tZ2kBGtnydZZ0A=';
const MD5 = 'md545f2603610af569b6155c45067268c6b';

describe('the file format', () => {
  test("PgBouncer's example userlist.txt", () => {
    expect(readUserlist(join(import.meta.dirname, 'ini-fixtures', 'userlist-1.25.2.txt'))).toEqual({ marko: 'asdasd', postgres: 'asdasd', pgbouncer: 'fake' });
  });

  test('"" is a quote inside a field; what follows the second field is ignored; ; lines are comments', () => {
    const users = parseUserlist(`; comment\n\n  "a""b" "p""w" trailing junk\r\n"scram"\t"${SCRAM}"\n"admin" "${MD5}"\n"a""b" "later"\n`, 'u.txt');
    expect(users).toEqual({ 'a"b': 'later', scram: SCRAM, admin: MD5 });
  });

  test('a broken line is an error naming the file and line, never its text', () => {
    for (const text of ['"alice" "hunter2', 'alice hunter2', '"alice"', '# "alice" "hunter2"', '"" "hunter2"']) {
      const msg = configError(() => parseUserlist(`"ok" "x"\n${text}\n`, 'u.txt'));
      expect(msg).toMatch(/^u\.txt:2: /);
      expect(msg).not.toContain('hunter2');
    }
  });

  test('secrets are told apart as PostgreSQL does', () => {
    expect([secretKind(MD5), secretKind(SCRAM), secretKind('md5short'), secretKind('hunter2')]).toEqual(['md5', 'scram', 'plaintext', 'plaintext']);
  });
});

describe('what loadConfig takes from auth_file', () => {
  const yaml = (lines: string[]) => file('c.yaml', lines.join('\n'));

  test("auth_user's plaintext entry is its password when nothing else sets one", () => {
    const list = file('u1.txt', '"pgbouncer" "auth-pw"\n"alice" "' + SCRAM + '"\n');
    const c = loadConfig({ file: yaml([`auth_file: ${list}`]), env: {} });
    expect(c.auth_password).toBe('auth-pw');
    expect(c.auth_file).toBe(list);
    expect(c.auth_file_passwords).toEqual({ pgbouncer: 'auth-pw', alice: SCRAM });
    expect(c.notices).toEqual([]);
    // auth_password (here from the environment) wins, as PgBouncer's file only fills a gap.
    expect(loadConfig({ file: yaml([`auth_file: ${list}`]), env: { PG_INGRESS_AUTH_PASSWORD: 'env-pw' } }).auth_password).toBe('env-pw');
  });

  test("auth_user with a hash or verifier there: no password, and a notice saying what to set (no secret in it)", () => {
    for (const secret of [MD5, SCRAM]) {
      const list = file('u2.txt', `"pgbouncer" "${secret}"\n`);
      const c = loadConfig({ file: yaml([`auth_file: ${list}`]), env: {} });
      expect(c.auth_password).toBeNull();
      expect(c.notices).toHaveLength(1);
      expect(c.notices[0]).toMatch(/auth_file: the entry of auth_user "pgbouncer" is (an md5 hash|a SCRAM verifier), not a password: .*set auth_password_file/);
      expect(c.notices[0]).not.toContain(secret);
    }
  });

  test('other users with plaintext passwords are named (not their passwords) as looked up with auth_query', () => {
    const list = file('u3.txt', '"alice" "alice-pw"\n"bob" "bob-pw"\n"carol" "' + MD5 + '"\n');
    const c = loadConfig({ file: yaml([`auth_file: ${list}`]), env: {} });
    expect(c.notices).toHaveLength(1);
    expect(c.notices[0]).toContain('"alice", "bob" have plaintext passwords there');
    expect(c.notices[0]).toContain('looked up with auth_query instead');
    expect(c.notices.join()).not.toMatch(/alice-pw|bob-pw/);
  });

  test('an unreadable auth_file is an error naming the key and where it was set', () => {
    expect(configError(() => loadConfig({ file: yaml(['auth_file: /nonexistent/userlist.txt']), env: {} }))).toMatch(/c\.yaml: auth_file: cannot read "\/nonexistent\/userlist.txt": ENOENT/);
  });
});
