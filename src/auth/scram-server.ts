// The server role of SCRAM-SHA-256 (RFC 5802 §5, RFC 7677), played toward the
// client. Follows PostgreSQL's src/backend/libpq/auth-scram.c: same GS2/channel
// binding rules, same mock exchange for unknown users, and additionally returns
// the ClientKey recovered from the proof so we can log in upstream as the user.
import { createHash, randomBytes } from 'node:crypto';
import {
  SCRAM_DEFAULT_ITERATIONS,
  SCRAM_DEFAULT_SALT_LEN,
  SCRAM_KEY_LEN,
  SCRAM_MAX_MESSAGE_LEN,
  ScramSyntaxError,
  authMessage,
  constantTimeEqual,
  decodeBase64,
  generateNonce,
  hmac,
  isPrintable,
  parseAttributes,
  sanitizeChar,
  sha256,
  xor,
} from './scram.js';
import type { ScramVerifier } from './verifier.js';

export type ScramServerResult<T> =
  | { ok: true; value: T }
  | { ok: false; reason: 'auth' | 'protocol'; message: string };

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';
export const SCRAM_SHA_256_PLUS = 'SCRAM-SHA-256-PLUS';
/** The only channel binding type PostgreSQL (and we) support, RFC 5929 §4. */
const CBIND_TYPE = 'tls-server-end-point';

// Per-process secret for mock salts, like PostgreSQL's cluster mock_authentication_nonce:
// stable within a process so repeated probes for one user see one salt.
const MOCK_SECRET = randomBytes(32);

/** PostgreSQL's scram_mock_salt(): SHA-256(username || secret), truncated to the salt length. */
function mockSalt(user: string): Buffer {
  return createHash('sha256').update(user, 'utf8').update(MOCK_SECRET).digest().subarray(0, SCRAM_DEFAULT_SALT_LEN);
}

type State = 'init' | 'salt-sent' | 'finished' | 'failed';

// Thrown inside a step and turned into a result value at the public boundary.
class Fail extends Error {
  constructor(
    readonly reason: 'auth' | 'protocol',
    message: string,
  ) {
    super(message);
  }
}
const protocol = (detail: string) => new Fail('protocol', `malformed SCRAM message (${detail})`);

export interface ScramServerOptions {
  /** tls-server-end-point data (hash of our certificate) when on TLS and advertising PLUS. */
  channelBinding?: Buffer | null;
  /** Startup user name; only seeds the mock salt when the verifier is null. */
  user?: string;
  /** s-nonce appended to the client nonce. Tests only; otherwise 18 random bytes in base64. */
  serverNonce?: string;
}

export class ScramServerExchange {
  // init → salt-sent (server-first sent) → finished | failed; failed is terminal.
  private state: State = 'init';
  private readonly doomed: boolean;
  private readonly verifier: ScramVerifier;
  private readonly channelBinding: Buffer | null;
  private readonly serverNonce: string;
  private cbindInUse = false;
  private gs2Header = '';
  private clientNonce = '';
  private clientFirstBare = '';
  private serverFirst = '';

  constructor(verifier: ScramVerifier | null, opts: ScramServerOptions = {}) {
    this.channelBinding = opts.channelBinding ?? null;
    this.serverNonce = opts.serverNonce ?? generateNonce();
    if (!isPrintable(this.serverNonce)) throw new TypeError('serverNonce must be printable ASCII without commas');
    // Mock exchange: plausible salt/iterations, zero keys; the proof is still computed so timing matches.
    this.doomed = verifier === null;
    this.verifier = verifier ?? {
      kind: 'scram-sha-256',
      iterations: SCRAM_DEFAULT_ITERATIONS,
      salt: mockSalt(opts.user ?? ''),
      storedKey: Buffer.alloc(SCRAM_KEY_LEN),
      serverKey: Buffer.alloc(SCRAM_KEY_LEN),
    };
  }

  /** Decreasing preference, as PostgreSQL lists them; PLUS only when we can bind to the TLS channel. */
  mechanisms(): string[] {
    return this.channelBinding ? [SCRAM_SHA_256_PLUS, SCRAM_SHA_256] : [SCRAM_SHA_256];
  }

  /** SASLInitialResponse → server-first-message (for AuthenticationSASLContinue). */
  clientFirst(mechanism: string, data: Buffer): ScramServerResult<Buffer> {
    return this.step('init', () => {
      if (mechanism === SCRAM_SHA_256_PLUS && this.channelBinding) this.cbindInUse = true;
      else if (mechanism !== SCRAM_SHA_256) {
        throw new Fail('protocol', 'client selected an invalid SASL authentication mechanism');
      }
      this.readClientFirst(decode(data));
      // RFC 5802 §5.1 server-first-message: nonce, salt, iteration count.
      const v = this.verifier;
      this.serverFirst = `r=${this.clientNonce}${this.serverNonce},s=${v.salt.toString('base64')},i=${v.iterations}`;
      this.state = 'salt-sent';
      return Buffer.from(this.serverFirst, 'latin1');
    });
  }

  /** SASLResponse → server-final-message (for AuthenticationSASLFinal) and the recovered ClientKey. */
  clientFinal(data: Buffer): ScramServerResult<{ serverFinal: Buffer; clientKey: Buffer }> {
    return this.step('salt-sent', () => {
      const { withoutProof, nonce, proof } = this.readClientFinal(decode(data));
      if (nonce !== this.clientNonce + this.serverNonce) {
        throw new Fail('protocol', 'invalid SCRAM response (nonce does not match)');
      }
      // RFC 5802 §3: ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); accept iff H(ClientKey) = StoredKey.
      const msg = authMessage(this.clientFirstBare, this.serverFirst, withoutProof);
      const clientKey = xor(proof, hmac(this.verifier.storedKey, msg));
      const proofOk = constantTimeEqual(sha256(clientKey), this.verifier.storedKey);
      // Checked after the proof math, as PostgreSQL does, so a mock exchange costs the same.
      if (!proofOk || this.doomed) throw new Fail('auth', 'password authentication failed');
      const signature = hmac(this.verifier.serverKey, msg);
      this.state = 'finished';
      return { serverFinal: Buffer.from(`v=${signature.toString('base64')}`, 'latin1'), clientKey };
    });
  }

  // Runs one step in the expected state; any failure is terminal for the exchange.
  private step<T>(expected: State, fn: () => T): ScramServerResult<T> {
    if (this.state !== expected) {
      this.state = 'failed';
      return { ok: false, reason: 'protocol', message: 'invalid SCRAM exchange state' };
    }
    try {
      return { ok: true, value: fn() };
    } catch (err) {
      this.state = 'failed';
      if (err instanceof Fail) return { ok: false, reason: err.reason, message: err.message };
      if (err instanceof ScramSyntaxError) return { ok: false, reason: 'protocol', message: err.message };
      throw err;
    }
  }

  // RFC 5802 §7: gs2-header client-first-message-bare, read the way auth-scram.c does.
  private readClientFirst(input: string): void {
    let p = 0;
    const flag = input[p];
    if (flag === 'n' || flag === 'y') {
      if (this.cbindInUse) {
        throw protocol('client selected SCRAM-SHA-256-PLUS, but the message does not include channel binding data');
      }
      // 'y': client could bind but thinks we can't; if we advertised PLUS, someone stripped it (downgrade).
      if (flag === 'y' && this.channelBinding) {
        throw new Fail('auth', 'SCRAM channel binding negotiation error');
      }
      p++;
    } else if (flag === 'p') {
      if (!this.cbindInUse) {
        throw protocol('client selected SCRAM-SHA-256 without channel binding, but the message includes channel binding data');
      }
      const comma = input.indexOf(',');
      if (comma < 0 || input.slice(0, comma) !== `p=${CBIND_TYPE}`) {
        throw new Fail('protocol', 'unsupported SCRAM channel-binding type');
      }
      p = comma;
    } else {
      throw protocol(`unexpected channel-binding flag ${sanitizeChar(flag)}`);
    }
    if (input[p] !== ',') throw protocol(`comma expected, found ${sanitizeChar(input[p])}`);
    p++;
    // authzid must be empty: PostgreSQL has no authorization identity.
    if (input[p] === 'a') throw new Fail('protocol', 'client uses authorization identity, but it is not supported');
    if (input[p] !== ',') throw protocol(`unexpected attribute ${sanitizeChar(input[p])} in client-first-message`);
    p++;
    this.gs2Header = input.slice(0, p);
    this.clientFirstBare = input.slice(p);

    const attrs = parseAttributes(this.clientFirstBare);
    // "m=" signals a mandatory extension (RFC 5802 §5.1); we support none, so fail now.
    if (attrs[0]?.key === 'm') throw new Fail('protocol', 'client requires an unsupported SCRAM extension');
    // n= is ignored: PostgreSQL authenticates the startup user (libpq sends "n=").
    expectKey(attrs[0], 'n');
    const nonce = expectKey(attrs[1], 'r');
    if (!isPrintable(nonce)) throw new Fail('protocol', 'non-printable characters in SCRAM nonce');
    this.clientNonce = nonce;
    // Remaining optional extensions are ignored, as the RFC requires.
  }

  // RFC 5802 §7: client-final-message = channel-binding "," nonce ["," extensions] "," proof.
  private readClientFinal(input: string): { withoutProof: string; nonce: string; proof: Buffer } {
    const attrs = parseAttributes(input);
    const cbind = expectKey(attrs[0], 'c');
    // c= is base64(gs2-header [cbind-data]); cbind-data only for "p" (RFC 5802 §6).
    const cbindInput = Buffer.concat([
      Buffer.from(this.gs2Header, 'latin1'),
      this.cbindInUse ? this.channelBinding! : Buffer.alloc(0),
    ]);
    if (cbind !== cbindInput.toString('base64')) {
      if (this.cbindInUse) throw new Fail('auth', 'SCRAM channel binding check failed');
      throw new Fail('protocol', 'unexpected SCRAM channel-binding attribute in client-final-message');
    }
    const nonce = expectKey(attrs[1], 'r');
    const proofAt = attrs.findIndex((a, i) => i >= 2 && a.key === 'p');
    if (proofAt < 0) throw protocol('proof expected in client-final-message');
    if (proofAt !== attrs.length - 1) throw protocol('garbage at end of client-final-message');
    const proof = decodeBase64(attrs[proofAt]!.value);
    if (!proof || proof.length !== SCRAM_KEY_LEN) throw protocol('malformed proof in client-final-message');
    // Values hold no ',', so re-joining the items reproduces the exact bytes before ",p=".
    const withoutProof = attrs
      .slice(0, proofAt)
      .map((a) => `${a.key}=${a.value}`)
      .join(',');
    return { withoutProof, nonce, proof };
  }
}

function expectKey(attr: { key: string; value: string } | undefined, key: string): string {
  if (!attr || attr.key !== key) {
    throw protocol(`attribute '${key}' expected, found ${attr ? sanitizeChar(attr.key) : 'end of message'}`);
  }
  return attr.value;
}

// Bounds the size and rejects NULs (PostgreSQL: "message length does not match input length").
// latin1 keeps one char per byte, so the AuthMessage is signed over the exact bytes received.
function decode(data: Buffer): string {
  if (data.length === 0) throw protocol('the message is empty');
  if (data.length > SCRAM_MAX_MESSAGE_LEN) throw protocol('the message is too long');
  if (data.includes(0)) throw protocol('message contains a NUL byte');
  return data.toString('latin1');
}
