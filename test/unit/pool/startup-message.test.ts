// The StartupMessage toward the server: a database's client_encoding must be
// the only one sent (PostgreSQL takes the last), UTF8 when it has none.
import { describe, expect, it } from 'vitest';
import { startupMessage } from '../../../src/pool/server-login.js';

function pairs(buf: Buffer): string[] {
  expect(buf.readInt32BE(0)).toBe(buf.length);
  expect(buf.readInt32BE(4)).toBe(196608);
  return buf.subarray(8, buf.length - 1).toString('utf8').split('\0').slice(0, -1);
}

describe('startupMessage', () => {
  it('sends client_encoding UTF8 by default, once', () => {
    expect(pairs(startupMessage({ user: 'u', database: 'd' }))).toEqual(['client_encoding', 'UTF8', 'user', 'u', 'database', 'd']);
  });

  it("sends the database's client_encoding, datestyle and timezone instead", () => {
    const p = pairs(startupMessage({ client_encoding: 'LATIN1', datestyle: 'ISO, DMY', timezone: 'UTC', user: 'u', database: 'd' }));
    expect(p).toEqual(['client_encoding', 'LATIN1', 'datestyle', 'ISO, DMY', 'timezone', 'UTC', 'user', 'u', 'database', 'd']);
  });
});
