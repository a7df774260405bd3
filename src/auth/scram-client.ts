// The client role of SCRAM-SHA-256 (RFC 5802 §5, RFC 7677), played toward the
// upstream server with keys instead of a password: the proof needs only
// ClientKey and StoredKey = H(ClientKey), and verifying the server needs only
// ServerKey (RFC 5802 §3), all of which the client-facing exchange recovered.
import {
  SCRAM_KEY_LEN,
  SCRAM_MAX_MESSAGE_LEN,
  ScramSyntaxError,
  authMessage,
  constantTimeEqual,
  decodeBase64,
  escapeSaslName,
  generateNonce,
  hmac,
  isPrintable,
  parseAttributes,
  sha256,
  xor,
} from './scram.js';

/** Failure of the upstream exchange; messages never contain key material. */
export class ScramClientError extends Error {
  override name = 'ScramClientError';
}

export interface ScramClientOptions {
  /** c-nonce. Tests only; otherwise 18 random bytes in base64. */
  clientNonce?: string;
  /** n= value; PostgreSQL ignores it and libpq sends it empty. Tests only (RFC vectors). */
  user?: string;
  /**
   * Channel binding (RFC 5802 §6), as libpq's channel_binding=prefer:
   * `none` in plaintext ("n"), `unused` over TLS when the server offers no
   * SCRAM-SHA-256-PLUS ("y": a server that could bind fails the downgrade),
   * or the tls-server-end-point data of the server's certificate for -PLUS ("p").
   */
  channelBinding?: { kind: 'none' } | { kind: 'unused' } | { kind: 'tls-server-end-point'; data: Buffer };
}

type State = 'init' | 'first-sent' | 'final-sent' | 'done';

export class ScramClientExchange {
  // init → first-sent → final-sent → done; any thrown error leaves it unusable.
  private state: State = 'init';
  private readonly clientKey: Buffer;
  private readonly serverKey: Buffer;
  private readonly nonce: string;
  private readonly clientFirstBare: string;
  private readonly gs2Header: string;
  /** c= of client-final: base64 of the GS2 header and, when bound, the binding data. */
  private readonly cbind: string;
  private auth: Buffer | null = null;
  private signatureVerified = false;

  constructor(keys: { clientKey: Buffer; serverKey: Buffer }, opts: ScramClientOptions = {}) {
    if (keys.clientKey.length !== SCRAM_KEY_LEN || keys.serverKey.length !== SCRAM_KEY_LEN) {
      throw new ScramClientError(`SCRAM keys must be ${SCRAM_KEY_LEN} bytes`);
    }
    this.clientKey = Buffer.from(keys.clientKey);
    this.serverKey = Buffer.from(keys.serverKey);
    this.nonce = opts.clientNonce ?? generateNonce();
    if (!isPrintable(this.nonce)) throw new ScramClientError('client nonce must be printable ASCII without commas');
    const binding = opts.channelBinding ?? { kind: 'none' };
    this.gs2Header = binding.kind === 'none' ? 'n,,' : binding.kind === 'unused' ? 'y,,' : 'p=tls-server-end-point,,';
    const bound = binding.kind === 'tls-server-end-point' ? binding.data : Buffer.alloc(0);
    this.cbind = Buffer.concat([Buffer.from(this.gs2Header, 'latin1'), bound]).toString('base64');
    // Kept as latin1 (one char per byte) so a UTF-8 user name signs as the bytes we send.
    this.clientFirstBare = Buffer.from(`n=${escapeSaslName(opts.user ?? '')},r=${this.nonce}`, 'utf8').toString('latin1');
  }

  /** True once serverFinal() checked the server's signature: only then has the server proven it knows the verifier. */
  get serverVerified(): boolean {
    return this.signatureVerified;
  }

  /** The SASL mechanism this exchange speaks. */
  get mechanism(): 'SCRAM-SHA-256' | 'SCRAM-SHA-256-PLUS' {
    return this.gs2Header.startsWith('p=') ? 'SCRAM-SHA-256-PLUS' : 'SCRAM-SHA-256';
  }

  /** Payload of SASLInitialResponse for `mechanism`. */
  clientFirst(): Buffer {
    this.advance('init', 'first-sent');
    return Buffer.from(this.gs2Header + this.clientFirstBare, 'latin1');
  }

  /** server-first-message (AuthenticationSASLContinue) → client-final-message (SASLResponse). */
  serverFirst(data: Buffer): Buffer {
    this.advance('first-sent', 'final-sent');
    const text = decode(data);
    const attrs = parse(text);
    // RFC 5802 §5.1: unknown mandatory extension ("m=") means the client must fail.
    if (attrs[0]?.key === 'm') throw new ScramClientError('server requires an unsupported SCRAM extension');
    const [r, s, i] = attrs;
    if (r?.key !== 'r' || s?.key !== 's' || i?.key !== 'i') {
      throw new ScramClientError('malformed SCRAM server-first-message');
    }
    // The combined nonce must extend ours with a non-empty s-nonce (RFC 5802 §5.1).
    if (!isPrintable(r.value) || !r.value.startsWith(this.nonce) || r.value.length === this.nonce.length) {
      throw new ScramClientError('invalid SCRAM server nonce');
    }
    const salt = decodeBase64(s.value);
    if (!salt || salt.length === 0) throw new ScramClientError('invalid SCRAM salt');
    if (!/^[0-9]{1,10}$/.test(i.value) || Number(i.value) < 1) {
      throw new ScramClientError('invalid SCRAM iteration count');
    }

    const withoutProof = `c=${this.cbind},r=${r.value}`;
    this.auth = authMessage(this.clientFirstBare, text, withoutProof);
    // RFC 5802 §3: ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage).
    const proof = xor(this.clientKey, hmac(sha256(this.clientKey), this.auth));
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`, 'latin1');
  }

  /** server-final-message (AuthenticationSASLFinal): checks v= = HMAC(ServerKey, AuthMessage). */
  serverFinal(data: Buffer): void {
    this.advance('final-sent', 'done');
    const attrs = parse(decode(data));
    const first = attrs[0]!;
    if (first.key === 'e') {
      // server-error-value is a token from a fixed RFC list; sanitize anyway, it is untrusted.
      const reason = first.value.replace(/[^\x21-\x7e]/g, '?').slice(0, 64);
      throw new ScramClientError(`SCRAM server error: ${reason}`);
    }
    if (first.key !== 'v') throw new ScramClientError('malformed SCRAM server-final-message');
    const signature = decodeBase64(first.value);
    const expected = hmac(this.serverKey, this.auth!);
    if (!signature || !constantTimeEqual(signature, expected)) {
      throw new ScramClientError('invalid SCRAM server signature');
    }
    this.signatureVerified = true;
  }

  private advance(from: State, to: State): void {
    if (this.state !== from) throw new ScramClientError('invalid SCRAM exchange state');
    this.state = to;
  }
}

function decode(data: Buffer): string {
  if (data.length === 0 || data.length > SCRAM_MAX_MESSAGE_LEN || data.includes(0)) {
    throw new ScramClientError('malformed SCRAM message');
  }
  return data.toString('latin1');
}

function parse(text: string): ReturnType<typeof parseAttributes> {
  try {
    return parseAttributes(text);
  } catch (err) {
    if (err instanceof ScramSyntaxError) throw new ScramClientError(err.message);
    throw err;
  }
}
