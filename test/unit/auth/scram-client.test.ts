// ScramClientExchange: the upstream leg, driven by keys rather than a password.
import { describe, it, expect } from 'vitest';
import { randomBytes } from 'node:crypto';
import { clientKey, saltedPassword, serverKey } from '../../../src/auth/scram.js';
import { ScramClientError, ScramClientExchange } from '../../../src/auth/scram-client.js';

const salted = saltedPassword('pw', Buffer.from('salt'), 16);
const keys = { clientKey: clientKey(salted), serverKey: serverKey(salted) };
const NONCE = 'clientNONCE';
const SERVER_FIRST = `r=${NONCE}serverPART,s=c2FsdA==,i=16`;

function atFinal(serverFirst = SERVER_FIRST): ScramClientExchange {
  const c = new ScramClientExchange(keys, { clientNonce: NONCE });
  c.clientFirst();
  c.serverFirst(Buffer.from(serverFirst));
  return c;
}

describe('ScramClientExchange', () => {
  it('sends "n,,n=,r=<nonce>" like libpq, with a fresh 24-char nonce by default', () => {
    expect(new ScramClientExchange(keys, { clientNonce: NONCE }).clientFirst().toString()).toBe(`n,,n=,r=${NONCE}`);
    const first = new ScramClientExchange(keys).clientFirst().toString();
    expect(first).toMatch(/^n,,n=,r=[A-Za-z0-9+/]{24}$/);
  });

  it('escapes the optional user name (RFC 5802 §5.1)', () => {
    const c = new ScramClientExchange(keys, { clientNonce: NONCE, user: 'a,b=c' });
    expect(c.clientFirst().toString()).toBe(`n,,n=a=2Cb=3Dc,r=${NONCE}`);
  });

  it('answers server-first with c=biws, the combined nonce and a 32-byte proof', () => {
    const c = new ScramClientExchange(keys, { clientNonce: NONCE });
    c.clientFirst();
    const fin = c.serverFirst(Buffer.from(SERVER_FIRST)).toString();
    expect(fin).toMatch(new RegExp(`^c=biws,r=${NONCE}serverPART,p=[A-Za-z0-9+/]{43}=$`));
  });

  it.each([
    ['nonce not extending ours', `r=otherNONCEserver,s=c2FsdA==,i=16`],
    ['nonce equal to ours', `r=${NONCE},s=c2FsdA==,i=16`],
    ['iteration count 0', `r=${NONCE}x,s=c2FsdA==,i=0`],
    ['negative iteration count', `r=${NONCE}x,s=c2FsdA==,i=-1`],
    ['non-numeric iteration count', `r=${NONCE}x,s=c2FsdA==,i=4k`],
    ['bad base64 salt', `r=${NONCE}x,s=c2Fs*A==,i=16`],
    ['empty salt', `r=${NONCE}x,s=,i=16`],
    ['missing salt', `r=${NONCE}x,i=16`],
    ['wrong order', `s=c2FsdA==,r=${NONCE}x,i=16`],
    ['mandatory extension', `m=ext,r=${NONCE}x,s=c2FsdA==,i=16`],
    ['duplicate attribute', `r=${NONCE}x,s=c2FsdA==,i=16,i=17`],
    ['garbage', '\u00ff\u00fe'],
    ['empty', ''],
    ['oversize', `r=${NONCE}x,s=c2FsdA==,i=16,x=${'a'.repeat(4096)}`],
  ])('rejects server-first with %s', (_name, serverFirst) => {
    const c = new ScramClientExchange(keys, { clientNonce: NONCE });
    c.clientFirst();
    expect(() => c.serverFirst(Buffer.from(serverFirst, 'latin1'))).toThrow(ScramClientError);
  });

  it('accepts extensions after i= in server-first', () => {
    expect(() => atFinal(`${SERVER_FIRST},x=1`)).not.toThrow();
  });

  it('rejects a bad server signature', () => {
    expect(() => atFinal().serverFinal(Buffer.from(`v=${randomBytes(32).toString('base64')}`))).toThrow(
      /invalid SCRAM server signature/,
    );
    expect(() => atFinal().serverFinal(Buffer.from('v=AAAA'))).toThrow(ScramClientError);
    expect(() => atFinal().serverFinal(Buffer.from('v=***'))).toThrow(ScramClientError);
  });

  it('reports "e=" server errors', () => {
    expect(() => atFinal().serverFinal(Buffer.from('e=invalid-proof'))).toThrow(/SCRAM server error: invalid-proof/);
  });

  it('rejects malformed server-final and out-of-order calls', () => {
    expect(() => atFinal().serverFinal(Buffer.from('x=1'))).toThrow(ScramClientError);
    expect(() => atFinal().serverFinal(Buffer.alloc(0))).toThrow(ScramClientError);
    const c = new ScramClientExchange(keys, { clientNonce: NONCE });
    expect(() => c.serverFirst(Buffer.from(SERVER_FIRST))).toThrow(/invalid SCRAM exchange state/);
    expect(() => c.serverFinal(Buffer.from('v=AAAA'))).toThrow(/invalid SCRAM exchange state/);
  });

  it('validates keys and nonce in the constructor', () => {
    expect(() => new ScramClientExchange({ clientKey: Buffer.alloc(31), serverKey: keys.serverKey })).toThrow(
      ScramClientError,
    );
    expect(() => new ScramClientExchange(keys, { clientNonce: 'a,b' })).toThrow(ScramClientError);
  });
});
