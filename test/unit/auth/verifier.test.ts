// parseVerifier on what an auth_query can return from pg_shadow.passwd.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { parseVerifier } from '../../../src/auth/verifier.js';
import { buildScramVerifier, formatScramVerifier } from '../../../src/auth/scram.js';

// RFC 7677 user "pencil" as PostgreSQL would store it.
const STORED = 'WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=';
const SERVER = 'wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=';
const REAL = `SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$${STORED}:${SERVER}`;

describe('parseVerifier', () => {
  it('parses a real SCRAM-SHA-256 verifier', () => {
    const v = parseVerifier(REAL);
    expect(v).toEqual({
      kind: 'scram-sha-256',
      iterations: 4096,
      salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'),
      storedKey: Buffer.from(STORED, 'base64'),
      serverKey: Buffer.from(SERVER, 'base64'),
    });
    expect(v).toEqual(buildScramVerifier('pencil', Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'), 4096));
  });

  it('round-trips formatScramVerifier', () => {
    const v = buildScramVerifier('pw', undefined, 7);
    expect(parseVerifier(formatScramVerifier(v))).toEqual(v);
  });

  it('parses md5 verifiers', () => {
    expect(parseVerifier('md52aea419619857e8a27f0f7aa641db0c6')).toEqual({
      kind: 'md5',
      hash: '2aea419619857e8a27f0f7aa641db0c6',
    });
  });

  it.each([
    ['null', null],
    ['undefined', undefined],
    ['empty', ''],
    ['plaintext', 'hunter2'],
    ['md5 uppercase hex', 'md52AEA419619857E8A27F0F7AA641DB0C6'],
    ['md5 too short', 'md52aea419619857e8a27f0f7aa641db0c'],
    ['md5 too long', 'md52aea419619857e8a27f0f7aa641db0c66'],
    ['md5 non-hex', 'md52aea419619857e8a27f0f7aa641db0cg'],
    ['other scheme', `SCRAM-SHA-1$4096:W22ZaJ0SNY7soEsUEjb6gQ==$${STORED}:${SERVER}`],
    ['iterations 0', `SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$${STORED}:${SERVER}`],
    ['iterations negative', `SCRAM-SHA-256$-1:W22ZaJ0SNY7soEsUEjb6gQ==$${STORED}:${SERVER}`],
    ['iterations not a number', `SCRAM-SHA-256$4k:W22ZaJ0SNY7soEsUEjb6gQ==$${STORED}:${SERVER}`],
    ['iterations overflow', `SCRAM-SHA-256$9999999999:W22ZaJ0SNY7soEsUEjb6gQ==$${STORED}:${SERVER}`],
    ['salt not base64', `SCRAM-SHA-256$4096:W22Z*J0SNY7soEsUEjb6gQ==$${STORED}:${SERVER}`],
    ['salt bad padding', `SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=$${STORED}:${SERVER}`],
    ['stored key not base64', `SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$${STORED.replace('W', '#')}:${SERVER}`],
    ['stored key too short', `SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$AAAA:${SERVER}`],
    ['server key too short', `SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$${STORED}:AAAA`],
    ['missing server key', `SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$${STORED}`],
    ['missing salt', `SCRAM-SHA-256$4096$${STORED}:${SERVER}`],
    ['missing keys', 'SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=='],
    ['trailing field', `${REAL}:AAAA`],
    ['leading space', ` ${REAL}`],
  ])('returns null for %s', (_name, input) => {
    expect(parseVerifier(input)).toBeNull();
  });

  it('never throws on arbitrary input', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => {
        const v = parseVerifier(s);
        expect(v === null || typeof v === 'object').toBe(true);
      }),
    );
  });
});
