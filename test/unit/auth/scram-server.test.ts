// ScramServerExchange against password clients (ours and node-postgres'), the
// mock exchange, and each way a client can break the protocol.
import { describe, it, expect } from 'vitest';
import { randomBytes } from 'node:crypto';
import { buildScramVerifier } from '../../../src/auth/scram.js';
import { ScramServerExchange, type ScramServerResult } from '../../../src/auth/scram-server.js';
import { ScramClientExchange } from '../../../src/auth/scram-client.js';
import { PasswordClient } from './password-client.js';

const PASSWORD = 'correct horse battery staple';
const verifier = buildScramVerifier(PASSWORD, randomBytes(16), 64);
const NONCE = 'fyko+d2lbbFgONRv9qkxdawL';
const SUFFIX = '3rfcNHYJY1ZVvWVs7j';
const CBIND = randomBytes(32); // stands in for SHA-256 of our certificate

function unwrap<T>(r: ScramServerResult<T>): T {
  if (!r.ok) throw new Error(`${r.reason}: ${r.message}`);
  return r.value;
}

/** Runs a password client through one server exchange and returns the final result. */
function login(server: ScramServerExchange, client: PasswordClient, mechanism = 'SCRAM-SHA-256') {
  const sf = unwrap(server.clientFirst(mechanism, client.first()));
  return server.clientFinal(client.final(sf));
}

/** Starts an exchange and returns the server-first-message text. */
function start(server: ScramServerExchange, first = `n,,n=,r=${NONCE}`, mechanism = 'SCRAM-SHA-256'): string {
  return unwrap(server.clientFirst(mechanism, Buffer.from(first))).toString();
}

function expectFail<T>(r: ScramServerResult<T>, reason: 'auth' | 'protocol', message?: RegExp) {
  expect(r.ok).toBe(false);
  if (r.ok) return;
  expect(r.reason).toBe(reason);
  if (message) expect(r.message).toMatch(message);
}

describe('ScramServerExchange: successful logins', () => {
  it('accepts a password client and the recovered ClientKey logs in via ScramClientExchange', () => {
    const client = new PasswordClient(PASSWORD, { nonce: NONCE });
    const fin = unwrap(login(new ScramServerExchange(verifier), client));
    expect(fin.serverFinal.toString()).toBe(client.expectedServerFinal);
    expect(fin.clientKey.equals(client.clientKey)).toBe(true);

    // Upstream leg: a second server exchange holding the same verifier, as Postgres would.
    const upstream = new ScramServerExchange(verifier);
    const proxy = new ScramClientExchange({ clientKey: fin.clientKey, serverKey: verifier.serverKey });
    const sf = unwrap(upstream.clientFirst('SCRAM-SHA-256', proxy.clientFirst()));
    const up = unwrap(upstream.clientFinal(proxy.serverFirst(sf)));
    expect(() => proxy.serverFinal(up.serverFinal)).not.toThrow();
    expect(up.clientKey.equals(fin.clientKey)).toBe(true);
  });

  it('interoperates with node-postgres SASL client, with "n" and with "y" flags', async () => {
    // Untyped internal module of pg; a non-literal specifier keeps tsc from resolving it.
    const spec: string = 'pg/lib/crypto/sasl.js';
    const sasl = (await import(spec)) as {
      startSession(m: string[], stream?: object): { response: string };
      continueSession(s: object, pw: string, data: string, stream?: object): Promise<void>;
      finalizeSession(s: object, data: string): void;
    };
    for (const stream of [undefined, {}]) {
      const server = new ScramServerExchange(verifier);
      const session = sasl.startSession(server.mechanisms(), stream);
      expect(session.response[0]).toBe(stream ? 'y' : 'n');
      const sf = unwrap(server.clientFirst('SCRAM-SHA-256', Buffer.from(session.response)));
      await sasl.continueSession(session, PASSWORD, sf.toString(), stream);
      const fin = unwrap(server.clientFinal(Buffer.from(session.response)));
      expect(() => sasl.finalizeSession(session, fin.serverFinal.toString())).not.toThrow();
    }
  });

  it('accepts "y" when PLUS was not advertised', () => {
    const client = new PasswordClient(PASSWORD, { nonce: NONCE, gs2Header: 'y,,' });
    expect(login(new ScramServerExchange(verifier), client).ok).toBe(true);
  });

  it('accepts channel binding tls-server-end-point with matching data', () => {
    const server = new ScramServerExchange(verifier, { channelBinding: CBIND });
    expect(server.mechanisms()).toEqual(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']);
    const client = new PasswordClient(PASSWORD, {
      nonce: NONCE,
      gs2Header: 'p=tls-server-end-point,,',
      cbindData: CBIND,
    });
    const fin = unwrap(login(server, client, 'SCRAM-SHA-256-PLUS'));
    expect(fin.clientKey.equals(client.clientKey)).toBe(true);
  });

  it('accepts plain SCRAM-SHA-256 with "n" even when PLUS is offered', () => {
    const server = new ScramServerExchange(verifier, { channelBinding: CBIND });
    expect(login(server, new PasswordClient(PASSWORD, { nonce: NONCE })).ok).toBe(true);
  });

  it('ignores the n= user name and optional extensions, signing them as sent', () => {
    const client = new PasswordClient(PASSWORD, { nonce: NONCE, user: 'someone=3Delse', extra: 'x=ext,y=a=b' });
    const server = new ScramServerExchange(verifier, { serverNonce: SUFFIX });
    const sf = unwrap(server.clientFirst('SCRAM-SHA-256', client.first()));
    expect(sf.toString().startsWith(`r=${NONCE}${SUFFIX},s=`)).toBe(true);
    const fin = unwrap(server.clientFinal(client.final(sf)));
    expect(fin.serverFinal.toString()).toBe(client.expectedServerFinal);
  });

  it('lists only SCRAM-SHA-256 without channel binding data', () => {
    expect(new ScramServerExchange(verifier).mechanisms()).toEqual(['SCRAM-SHA-256']);
    expect(new ScramServerExchange(verifier, { channelBinding: null }).mechanisms()).toEqual(['SCRAM-SHA-256']);
  });
});

describe('ScramServerExchange: authentication failures', () => {
  it('rejects a wrong password with reason auth', () => {
    const r = login(new ScramServerExchange(verifier), new PasswordClient('wrong', { nonce: NONCE }));
    expectFail(r, 'auth', /password authentication failed/);
  });

  it('mock exchange: deterministic salt per user, 4096 iterations, always fails with auth', () => {
    const salt = (user: string) => /,s=([^,]+),/.exec(start(new ScramServerExchange(null, { user })))![1];
    expect(salt('alice')).toBe(salt('alice'));
    expect(salt('alice')).not.toBe(salt('bob'));
    // Looks like a real default verifier: 16-byte salt, i=4096.
    expect(Buffer.from(salt('alice')!, 'base64')).toHaveLength(16);
    expect(start(new ScramServerExchange(null, { user: 'alice' }))).toMatch(/,i=4096$/);

    for (const password of ['', PASSWORD, 'anything']) {
      const r = login(new ScramServerExchange(null, { user: 'alice' }), new PasswordClient(password, { nonce: NONCE }));
      expectFail(r, 'auth', /password authentication failed/);
    }
  });

  it('mock exchange reports protocol errors exactly like a real one', () => {
    const real = new ScramServerExchange(verifier).clientFirst('SCRAM-SHA-256', Buffer.from('x,,n=,r=a'));
    const mock = new ScramServerExchange(null, { user: 'alice' }).clientFirst('SCRAM-SHA-256', Buffer.from('x,,n=,r=a'));
    expect(mock).toEqual(real);
  });

  it('"y" when PLUS was advertised is a downgrade: fails with auth', () => {
    const server = new ScramServerExchange(verifier, { channelBinding: CBIND });
    expectFail(
      server.clientFirst('SCRAM-SHA-256', Buffer.from(`y,,n=,r=${NONCE}`)),
      'auth',
      /channel binding negotiation error/,
    );
  });

  it('wrong channel binding data with PLUS fails with auth', () => {
    const server = new ScramServerExchange(verifier, { channelBinding: CBIND });
    const client = new PasswordClient(PASSWORD, {
      nonce: NONCE,
      gs2Header: 'p=tls-server-end-point,,',
      cbindData: randomBytes(32),
    });
    expectFail(login(server, client, 'SCRAM-SHA-256-PLUS'), 'auth', /channel binding check failed/);
  });
});

describe('ScramServerExchange: protocol violations', () => {
  const first = (data: string | Buffer, mechanism = 'SCRAM-SHA-256', channelBinding: Buffer | null = null) =>
    new ScramServerExchange(verifier, { channelBinding }).clientFirst(
      mechanism,
      typeof data === 'string' ? Buffer.from(data, 'latin1') : data,
    );

  it.each([
    ['unknown flag', 'x,,n=,r=abc'],
    ['missing comma after flag', 'nn=,r=abc'],
    ['authzid', 'n,a=admin,n=,r=abc'],
    ['junk instead of authzid', 'n,b,n=,r=abc'],
    ['truncated header', 'n,'],
    ['"p" without PLUS', 'p=tls-server-end-point,,n=,r=abc'],
    ['mandatory extension', 'n,,m=ext,n=,r=abc'],
    ['missing user', 'n,,r=abc'],
    ['missing nonce', 'n,,n='],
    ['empty nonce', 'n,,n=,r='],
    ['non-printable nonce', 'n,,n=,r=ab\u00e9c'],
    ['duplicate attribute', 'n,,n=,r=abc,x=1,x=2'],
    ['trailing comma', 'n,,n=,r=abc,'],
  ])('client-first: %s → protocol', (_name, data) => {
    expectFail(first(data), 'protocol');
  });

  it('rejects mechanisms we did not advertise', () => {
    expectFail(first(`n,,n=,r=${NONCE}`, 'SCRAM-SHA-256-PLUS'), 'protocol', /invalid SASL authentication mechanism/);
    expectFail(first(`n,,n=,r=${NONCE}`, 'SCRAM-SHA-1'), 'protocol', /invalid SASL authentication mechanism/);
  });

  it('with PLUS selected, "n"/"y" flags and other binding types are protocol errors', () => {
    for (const data of [`n,,n=,r=${NONCE}`, `y,,n=,r=${NONCE}`, `p=tls-unique,,n=,r=${NONCE}`]) {
      expectFail(first(data, 'SCRAM-SHA-256-PLUS', CBIND), 'protocol');
    }
  });

  it('rejects empty, oversize, NUL-containing and garbage messages', () => {
    expectFail(first(Buffer.alloc(0)), 'protocol', /empty/);
    expectFail(first(`n,,n=,r=${'a'.repeat(4096)}`), 'protocol', /too long/);
    expectFail(first(Buffer.from(`n,,n=,r=ab\0c`)), 'protocol', /NUL/);
    expectFail(first(Buffer.from([0xff, 0xfe, 0x01, 0x80])), 'protocol', /0xff/);
    for (let i = 0; i < 50; i++) {
      const r = first(randomBytes(1 + (i % 40)));
      expect(r.ok === false && r.reason === 'protocol').toBe(true);
    }
  });

  // client-final variants; a real proof so only the violation under test fails.
  const finalWith = (mutate: (msg: string) => string) => {
    const server = new ScramServerExchange(verifier, { serverNonce: SUFFIX });
    const client = new PasswordClient(PASSWORD, { nonce: NONCE });
    const sf = unwrap(server.clientFirst('SCRAM-SHA-256', client.first()));
    return server.clientFinal(Buffer.from(mutate(client.final(sf).toString()), 'latin1'));
  };

  it('the unmodified client-final succeeds (control)', () => {
    expect(finalWith((m) => m).ok).toBe(true);
  });

  it.each<[string, (m: string) => string, RegExp]>([
    ['wrong nonce', (m) => m.replace(SUFFIX, SUFFIX.slice(0, -1) + 'X'), /nonce does not match/],
    ['client nonce only', (m) => m.replace(SUFFIX, ''), /nonce does not match/],
    ['c= of "y,,"', (m) => m.replace('c=biws', 'c=eSws'), /channel-binding attribute/],
    ['c= with binding data', (m) => m.replace('c=biws', `c=${Buffer.from('n,,xyz').toString('base64')}`), /channel-binding/],
    ['missing c=', (m) => m.replace('c=biws,', ''), /attribute 'c' expected/],
    ['r= before c=', (m) => m.replace(/^(c=[^,]+),(r=[^,]+)/, '$2,$1'), /attribute 'c' expected/],
    ['missing proof', (m) => m.replace(/,p=.*$/, ''), /proof expected/],
    ['short proof', (m) => m.replace(/,p=.*$/, ',p=AAAA'), /malformed proof/],
    ['bad base64 proof', (m) => m.replace(/,p=.{4}/, ',p=!!!!'), /malformed proof/],
    ['garbage after proof', (m) => `${m},x=1`, /garbage at end/],
    ['duplicate attribute', (m) => m.replace(',p=', ',x=1,x=2,p='), /duplicate/],
    ['oversize', (m) => m.replace(',p=', `,x=${'a'.repeat(4096)},p=`), /too long/],
  ])('client-final: %s → protocol', (_name, mutate, message) => {
    expectFail(finalWith(mutate), 'protocol', message);
  });

  it('an extension before the proof is signed, so tampering with it fails as auth', () => {
    // The proof was computed without the extension, so the AuthMessage differs.
    expectFail(finalWith((m) => m.replace(',p=', ',x=1,p=')), 'auth');
  });

  it('enforces step order and is unusable after a failure', () => {
    const server = new ScramServerExchange(verifier);
    expectFail(server.clientFinal(Buffer.from('c=biws,r=x,p=AAAA')), 'protocol', /invalid SCRAM exchange state/);
    expectFail(server.clientFirst('SCRAM-SHA-256', Buffer.from(`n,,n=,r=${NONCE}`)), 'protocol', /state/);

    const s2 = new ScramServerExchange(verifier);
    start(s2);
    expectFail(s2.clientFirst('SCRAM-SHA-256', Buffer.from(`n,,n=,r=${NONCE}`)), 'protocol', /state/);
  });

  it('never puts secrets or client input in messages', () => {
    const r = new ScramServerExchange(verifier, { channelBinding: CBIND }).clientFirst(
      'SCRAM-SHA-256-PLUS',
      Buffer.from(`p=secret-binding-type,,n=,r=${NONCE}`),
    );
    expectFail(r, 'protocol');
    if (!r.ok) expect(r.message).not.toMatch(/secret/);
  });
});
