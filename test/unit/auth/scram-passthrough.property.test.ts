// Property: for any password/salt/iteration count, a password client logs in through
// ScramServerExchange, and the ClientKey it yields logs in again upstream (pass-through).
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { buildScramVerifier } from '../../../src/auth/scram.js';
import { ScramServerExchange } from '../../../src/auth/scram-server.js';
import { ScramClientExchange } from '../../../src/auth/scram-client.js';
import { PasswordClient } from './password-client.js';

describe('SCRAM pass-through property', () => {
  it('password client → proxy → upstream always succeeds with the recovered ClientKey', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 40 }),
        fc.uint8Array({ minLength: 1, maxLength: 32 }),
        fc.integer({ min: 1, max: 50 }),
        fc.stringMatching(/^[\x21-\x2b\x2d-\x7e]{1,32}$/),
        (password, saltBytes, iterations, nonce) => {
          const verifier = buildScramVerifier(password, Buffer.from(saltBytes), iterations);

          const client = new PasswordClient(password, { nonce });
          const front = new ScramServerExchange(verifier);
          const sf = front.clientFirst('SCRAM-SHA-256', client.first());
          if (!sf.ok) throw new Error(sf.message);
          const fin = front.clientFinal(client.final(sf.value));
          if (!fin.ok) throw new Error(fin.message);
          expect(fin.value.serverFinal.toString()).toBe(client.expectedServerFinal);

          const upstream = new ScramServerExchange(verifier);
          const proxy = new ScramClientExchange({ clientKey: fin.value.clientKey, serverKey: verifier.serverKey });
          const usf = upstream.clientFirst('SCRAM-SHA-256', proxy.clientFirst());
          if (!usf.ok) throw new Error(usf.message);
          const ufin = upstream.clientFinal(proxy.serverFirst(usf.value));
          if (!ufin.ok) throw new Error(ufin.message);
          proxy.serverFinal(ufin.value.serverFinal);
          expect(ufin.value.clientKey.equals(fin.value.clientKey)).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});
