// md5 auth against a vector computed independently with node:crypto.
import { describe, it, expect } from 'vitest';
import { createHash } from 'node:crypto';
import { md5Check, md5Response, md5Verifier } from '../../../src/auth/md5.js';

const md5hex = (d: string | Buffer) => createHash('md5').update(d).digest('hex');
const USER = 'md5user';
const PASSWORD = 'secret';
const SALT = Buffer.from([1, 2, 3, 4]);

describe('md5 auth', () => {
  const inner = md5hex(PASSWORD + USER);
  const expected = 'md5' + md5hex(Buffer.concat([Buffer.from(inner), SALT]));

  it('stores "md5" + md5hex(password + user) like PostgreSQL', () => {
    expect(md5Verifier(PASSWORD, USER)).toBe('md5' + inner);
    expect(md5Verifier(PASSWORD, USER)).toBe('md52aea419619857e8a27f0f7aa641db0c6');
  });

  it('answers AuthenticationMD5Password from the stored hash alone', () => {
    expect(md5Response(inner, SALT)).toBe(expected);
    expect(expected).toBe('md56b614f1bd5dc8478f5705c783c9bbdc0');
  });

  it('checks client responses', () => {
    expect(md5Check(inner, SALT, expected)).toBe(true);
    expect(md5Check(inner, Buffer.from([1, 2, 3, 5]), expected)).toBe(false);
    expect(md5Check(inner, SALT, expected.toUpperCase())).toBe(false);
    expect(md5Check(inner, SALT, expected.slice(0, -1))).toBe(false);
    expect(md5Check(inner, SALT, '')).toBe(false);
    expect(md5Check(md5hex('other' + USER), SALT, expected)).toBe(false);
  });
});
