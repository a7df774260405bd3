// SCRAM primitives and the RFC 7677 §3 test vector, run through both exchange sides.
import { describe, it, expect } from 'vitest';
import {
  buildScramVerifier,
  clientKey,
  constantTimeEqual,
  decodeBase64,
  escapeSaslName,
  generateNonce,
  isPrintable,
  parseAttributes,
  saltedPassword,
  serverKey,
  unescapeSaslName,
  xor,
} from '../../../src/auth/scram.js';
import { ScramServerExchange } from '../../../src/auth/scram-server.js';
import { ScramClientExchange } from '../../../src/auth/scram-client.js';
import { PasswordClient } from './password-client.js';

// RFC 7677 §3.
const RFC = {
  user: 'user',
  password: 'pencil',
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  serverNonceSuffix: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  salt: 'W22ZaJ0SNY7soEsUEjb6gQ==',
  iterations: 4096,
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal:
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};

describe('RFC 7677 test vector', () => {
  const salt = Buffer.from(RFC.salt, 'base64');
  const salted = saltedPassword(RFC.password, salt, RFC.iterations);
  const keys = { clientKey: clientKey(salted), serverKey: serverKey(salted) };
  const verifier = buildScramVerifier(RFC.password, salt, RFC.iterations);

  it('ScramServerExchange ↔ ScramClientExchange reproduce every message byte for byte', () => {
    const client = new ScramClientExchange(keys, { clientNonce: RFC.clientNonce, user: RFC.user });
    const server = new ScramServerExchange(verifier, { serverNonce: RFC.serverNonceSuffix });

    const cf = client.clientFirst();
    expect(cf.toString()).toBe(RFC.clientFirst);
    const sf = server.clientFirst('SCRAM-SHA-256', cf);
    expect(sf.ok && sf.value.toString()).toBe(RFC.serverFirst);
    if (!sf.ok) return;

    const cfin = client.serverFirst(sf.value);
    expect(cfin.toString()).toBe(RFC.clientFinal);
    const fin = server.clientFinal(cfin);
    expect(fin.ok).toBe(true);
    if (!fin.ok) return;
    expect(fin.value.serverFinal.toString()).toBe(RFC.serverFinal);
    expect(fin.value.clientKey.equals(keys.clientKey)).toBe(true);
    expect(() => client.serverFinal(fin.value.serverFinal)).not.toThrow();
  });

  it('the password client computes the same proof and recovers the same ClientKey', () => {
    const pc = new PasswordClient(RFC.password, { nonce: RFC.clientNonce, user: RFC.user });
    const server = new ScramServerExchange(verifier, { serverNonce: RFC.serverNonceSuffix });
    const sf = server.clientFirst('SCRAM-SHA-256', pc.first());
    if (!sf.ok) throw new Error(sf.message);
    const cfin = pc.final(sf.value);
    expect(cfin.toString()).toBe(RFC.clientFinal);
    const fin = server.clientFinal(cfin);
    if (!fin.ok) throw new Error(fin.message);
    expect(fin.value.serverFinal.toString()).toBe(pc.expectedServerFinal);
    expect(fin.value.clientKey.equals(pc.clientKey)).toBe(true);
  });
});

describe('SCRAM primitives', () => {
  it('parses attributes in order, allowing "=" inside values', () => {
    expect(parseAttributes('r=abc,s=QSXCR+Q6sek8bf92==,i=4096')).toEqual([
      { key: 'r', value: 'abc' },
      { key: 's', value: 'QSXCR+Q6sek8bf92==' },
      { key: 'i', value: '4096' },
    ]);
    expect(parseAttributes('n=')).toEqual([{ key: 'n', value: '' }]);
  });

  it.each(['', 'r', 'r=a,', ',r=a', 'r=a,,s=b', '1=a', 'rr=a', 'r=a,r=b', '\u00ff=a'])(
    'rejects malformed attribute list %j',
    (text) => {
      expect(() => parseAttributes(text)).toThrow(/malformed SCRAM message/);
    },
  );

  it('escapes and unescapes saslnames (RFC 5802 §5.1)', () => {
    expect(escapeSaslName('a,b=c')).toBe('a=2Cb=3Dc');
    expect(unescapeSaslName('a=2Cb=3Dc')).toBe('a,b=c');
    expect(unescapeSaslName('=3D2C')).toBe('=2C');
    expect(unescapeSaslName('a=b')).toBeNull();
    expect(unescapeSaslName('a=')).toBeNull();
  });

  it('decodes only strict base64', () => {
    expect(decodeBase64('AQID')?.equals(Buffer.from([1, 2, 3]))).toBe(true);
    expect(decodeBase64('')?.length).toBe(0);
    for (const bad of ['AQI', 'AQ=D', 'AQID*', 'AQ I D', 'AQ==AQ==']) expect(decodeBase64(bad)).toBeNull();
  });

  it('generates 24-char printable nonces, xors, and compares in constant time', () => {
    const n = generateNonce();
    expect(n).toHaveLength(24);
    expect(isPrintable(n)).toBe(true);
    expect(generateNonce()).not.toBe(n);
    expect(isPrintable('a,b')).toBe(false);
    expect(isPrintable('')).toBe(false);
    expect(xor(Buffer.from([0xf0, 0x0f]), Buffer.from([0xff, 0xff]))).toEqual(Buffer.from([0x0f, 0xf0]));
    expect(() => xor(Buffer.alloc(1), Buffer.alloc(2))).toThrow();
    expect(constantTimeEqual(Buffer.from('ab'), Buffer.from('ab'))).toBe(true);
    expect(constantTimeEqual(Buffer.from('ab'), Buffer.from('ac'))).toBe(false);
    expect(constantTimeEqual(Buffer.from('ab'), Buffer.from('abc'))).toBe(false);
  });

  it('builds verifiers with a random 16-byte salt and 4096 iterations by default', () => {
    const v = buildScramVerifier('pw');
    expect(v.salt).toHaveLength(16);
    expect(v.iterations).toBe(4096);
    expect(v.storedKey).toHaveLength(32);
    expect(v.serverKey).toHaveLength(32);
    expect(() => buildScramVerifier('pw', Buffer.alloc(16), 0)).toThrow(RangeError);
  });
});
