// A raw protocol client for the tests that send what real clients never do.
import net from 'node:net';
import tls from 'node:tls';
import { serialize } from 'pg-protocol';

export interface RawMessage {
  type: string;
  body: Buffer;
}

/** Reads bytes and typed messages from a socket, with timeouts; never hangs a test. */
export class RawConn {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;
  /** Date.now() when the connection closed, null while open. */
  closedAt: number | null = null;

  constructor(public socket: net.Socket | tls.TLSSocket) {
    this.listen(socket);
  }

  static async connect(port: number): Promise<RawConn> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawConn(socket);
  }

  private listen(socket: net.Socket | tls.TLSSocket): void {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.closedAt ??= Date.now();
      this.wake();
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  write(b: Buffer | string): void {
    this.socket.write(b);
  }

  /** Bytes received and not read yet (a copy). */
  get pending(): Buffer {
    return Buffer.from(this.buf);
  }

  /** Half-closes: sends FIN (TLS: close_notify first), keeps reading. */
  endWrite(): void {
    this.socket.end();
  }

  private async until(pred: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (this.closed || Date.now() > deadline) return pred();
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return true;
  }

  /** One untyped byte (the answer to SSLRequest / GSSENCRequest), or null on close. */
  async byte(timeoutMs = 5000): Promise<string | null> {
    if (!(await this.until(() => this.buf.length >= 1, timeoutMs))) return null;
    const b = String.fromCharCode(this.buf[0]!);
    this.buf = this.buf.subarray(1);
    return b;
  }

  /** The next typed message, or null if the connection closed first. */
  async message(timeoutMs = 5000): Promise<RawMessage | null> {
    const ok = await this.until(() => this.buf.length >= 5 && this.buf.length >= 1 + this.buf.readInt32BE(1), timeoutMs);
    if (!ok) {
      if (this.closed) return null;
      throw new Error('timed out waiting for a message');
    }
    const len = this.buf.readInt32BE(1);
    const msg = { type: String.fromCharCode(this.buf[0]!), body: Buffer.from(this.buf.subarray(5, 1 + len)) };
    this.buf = this.buf.subarray(1 + len);
    return msg;
  }

  /** Resolves true once the peer closed the connection (within the timeout). */
  async waitClosed(timeoutMs = 5000): Promise<boolean> {
    return this.until(() => this.closed, timeoutMs);
  }

  /** Upgrades to TLS (after an 'S'); accepts any certificate. */
  async startTls(servername = 'localhost', alpn?: string[]): Promise<void> {
    const plain = this.socket as net.Socket;
    plain.removeAllListeners('data');
    const secure = tls.connect({ socket: plain, servername, rejectUnauthorized: false, ...(alpn ? { ALPNProtocols: alpn } : {}) });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    this.socket = secure;
    this.listen(secure);
  }

  end(): void {
    this.socket.destroy();
  }
}

export const sslRequest = (): Buffer => int32s(8, 80877103);
export const gssencRequest = (): Buffer => int32s(8, 80877104);
export const startup = (params: Record<string, string>): Buffer => serialize.startup(params);

/** A StartupMessage with any protocol version code. */
export function startupWithVersion(code: number, params: Record<string, string>): Buffer {
  const body = Buffer.from(Object.entries(params).map(([k, v]) => `${k}\0${v}\0`).join('') + '\0');
  const head = int32s(8 + body.length, code);
  return Buffer.concat([head, body]);
}

export function int32s(...ns: number[]): Buffer {
  const b = Buffer.alloc(4 * ns.length);
  ns.forEach((n, i) => b.writeInt32BE(n, 4 * i));
  return b;
}

/** ErrorResponse fields by their type letter. */
export function errorFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < body.length && body[pos] !== 0) {
    const end = body.indexOf(0, pos + 1);
    out[String.fromCharCode(body[pos]!)] = body.toString('utf8', pos + 1, end);
    pos = end + 1;
  }
  return out;
}

/** Where rawLogin stops: at the first authentication request, after SASLContinue, after AuthenticationOk, or at ReadyForQuery. */
export type LoginStop = 'auth-request' | 'sasl-continue' | 'auth-ok' | 'ready';

export interface RawLoginOptions {
  /** More startup parameters (application_name, …). */
  params?: Record<string, string>;
  until?: LoginStop;
  /** SSLRequest and TLS first (default); false logs in in plaintext. */
  tls?: boolean;
}

/**
 * Logs in over TLS with SCRAM as a real client would, then hands back the
 * connection after ReadyForQuery (or at `opts.until`): for tests that send
 * hand-made message batches.
 */
export async function rawLogin(port: number, database: string, user: string, password: string, opts: RawLoginOptions = {}): Promise<RawConn> {
  const { PasswordClient } = await import('../unit/auth/password-client.js');
  const until = opts.until ?? 'ready';
  const c = await RawConn.connect(port);
  if (opts.tls !== false) {
    c.write(sslRequest());
    if ((await c.byte()) !== 'S') throw new Error('no TLS');
    await c.startTls();
  }
  c.write(startup({ user, database, ...opts.params }));
  const scram = new PasswordClient(password, { nonce: 'raw-test-nonce-0123456789' });
  for (;;) {
    const m = await c.message();
    if (!m) throw new Error('closed during login');
    if (m.type === 'E') throw new Error(`login failed: ${errorFields(m.body).M}`);
    if (m.type === 'Z') return c;
    if (m.type !== 'R') continue;
    const code = m.body.readInt32BE(0);
    if (until === 'auth-request') return c;
    if (code === 0 && until === 'auth-ok') return c;
    if (code === 10) c.write(serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', scram.first().toString()));
    if (code === 11) {
      if (until === 'sasl-continue') return c;
      c.write(serialize.sendSCRAMClientFinalMessage(scram.final(m.body.subarray(4)).toString()));
    }
  }
}

/** Reads messages until ReadyForQuery; returns their type letters. */
export async function typesUntilReady(c: RawConn): Promise<string[]> {
  const types: string[] = [];
  for (;;) {
    const m = await c.message();
    if (!m) throw new Error('closed');
    types.push(m.type);
    if (m.type === 'Z') return types;
  }
}
