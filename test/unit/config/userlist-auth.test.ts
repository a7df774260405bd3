// Which auth_file entries a login uses instead of auth_query (src/auth/userlist.ts).
import { expect, test } from 'vitest';
import { authFileVerifier } from '../../../src/auth/userlist.js';

const SCRAM = 'SCRAM-SHA-256$4096:c2FsdHNhbHQ=$3Kk/UWhXKPQEbLwIsBNNTAQCjYCfLmn4eTG9YiM7NKY=:0f0hP8rFvK5bKXL8bSqkGaFLXIYV5tZ2kBGtnydZZ0A=';
const MD5 = 'md545f2603610af569b6155c45067268c6b';
const passwords: Record<string, string> = Object.assign(Object.create(null), { scram: SCRAM, md5: MD5, plain: 'hunter2', broken: 'SCRAM-SHA-256$x' });

test('a SCRAM verifier or md5 hash is used; plaintext, malformed or unlisted users go to auth_query (null)', () => {
  expect(authFileVerifier(passwords, 'scram')).toBe(SCRAM);
  expect(authFileVerifier(passwords, 'md5')).toBe(MD5);
  for (const user of ['plain', 'broken', 'nobody', 'constructor', '__proto__']) expect(authFileVerifier(passwords, user)).toBeNull();
  // Also with an ordinary object, as a Config that crossed IPC has.
  expect(authFileVerifier({ ...passwords }, 'toString')).toBeNull();
});
