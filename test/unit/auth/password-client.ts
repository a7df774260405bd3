// A tiny password-based SCRAM-SHA-256 client (RFC 5802 §3), as libpq would behave,
// written independently of ScramClientExchange so the two can check each other.
import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';

const h = (d: Buffer) => createHash('sha256').update(d).digest();
const mac = (k: Buffer, d: string | Buffer) => createHmac('sha256', k).update(d).digest();

export interface PasswordClientOptions {
  nonce: string;
  user?: string;
  /** GS2 header, e.g. "n,,", "y,,", "p=tls-server-end-point,,". */
  gs2Header?: string;
  /** cbind-data appended to the GS2 header in c= (only meaningful with "p="). */
  cbindData?: Buffer;
  /** Optional extensions appended to client-first-message-bare, e.g. "x=1". */
  extra?: string;
}

export class PasswordClient {
  readonly gs2Header: string;
  readonly bare: string;
  clientKey: Buffer = Buffer.alloc(0);
  serverKey: Buffer = Buffer.alloc(0);
  expectedServerFinal = '';

  constructor(
    private readonly password: string,
    private readonly opts: PasswordClientOptions,
  ) {
    this.gs2Header = opts.gs2Header ?? 'n,,';
    this.bare = `n=${opts.user ?? ''},r=${opts.nonce}` + (opts.extra ? `,${opts.extra}` : '');
  }

  first(): Buffer {
    return Buffer.from(this.gs2Header + this.bare);
  }

  final(serverFirst: Buffer): Buffer {
    const sf = serverFirst.toString();
    const m = /^r=([^,]+),s=([^,]+),i=(\d+)$/.exec(sf);
    if (!m || !m[1]!.startsWith(this.opts.nonce)) throw new Error('bad server-first');
    const salted = pbkdf2Sync(this.password, Buffer.from(m[2]!, 'base64'), Number(m[3]), 32, 'sha256');
    this.clientKey = mac(salted, 'Client Key');
    this.serverKey = mac(salted, 'Server Key');
    const cbind = Buffer.concat([Buffer.from(this.gs2Header), this.opts.cbindData ?? Buffer.alloc(0)]);
    const withoutProof = `c=${cbind.toString('base64')},r=${m[1]}`;
    const auth = `${this.bare},${sf},${withoutProof}`;
    const sig = mac(h(this.clientKey), auth);
    const proof = Buffer.from(this.clientKey.map((b, i) => b ^ sig[i]!));
    this.expectedServerFinal = `v=${mac(this.serverKey, auth).toString('base64')}`;
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`);
  }
}
