// Frontend message builders and an answer recorder for tests that compare what
// PostgreSQL and pg-ingress answer to the same bytes. Written from the protocol
// docs, not from src/: https://www.postgresql.org/docs/current/protocol-message-formats.html
import type { RawConn, RawMessage } from './raw.js';
import { errorFields } from './raw.js';

/** Byte1 type, Int32 length (counts itself, not the type; `length` overrides it), body. */
export function typed(type: string, body: Buffer = Buffer.alloc(0), length = 4 + body.length): Buffer {
  const head = Buffer.alloc(5);
  head[0] = type.charCodeAt(0);
  head.writeInt32BE(length, 1);
  return Buffer.concat([head, body]);
}

const cstr = (s: string): Buffer => Buffer.from(`${s}\0`, 'utf8');
const int16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n, 0);
  return b;
};
const int32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n, 0);
  return b;
};

/** Query (Q): the SQL string. */
export const query = (sql: string): Buffer => typed('Q', cstr(sql));
/** Parse (P): statement name, SQL, no parameter types. */
export const parse = (name: string, sql: string): Buffer => typed('P', Buffer.concat([cstr(name), cstr(sql), int16(0)]));
/** Bind (B): portal, statement, no parameter formats, no parameters, no result formats. */
export const bind = (portal: string, statement: string): Buffer => typed('B', Buffer.concat([cstr(portal), cstr(statement), int16(0), int16(0), int16(0)]));
/** Describe (D): 'S' statement or 'P' portal, and its name. */
export const describe = (kind: 'S' | 'P', name: string): Buffer => typed('D', Buffer.concat([Buffer.from(kind), cstr(name)]));
/** Execute (E): portal, maximum rows (0 = all). */
export const execute = (portal: string, maxRows = 0): Buffer => typed('E', Buffer.concat([cstr(portal), int32(maxRows)]));
/** Close (C): 'S' statement or 'P' portal, and its name. */
export const close = (kind: 'S' | 'P', name: string): Buffer => typed('C', Buffer.concat([Buffer.from(kind), cstr(name)]));
export const sync = (): Buffer => typed('S');
export const flush = (): Buffer => typed('H');
export const copyData = (text: string): Buffer => typed('d', Buffer.from(text, 'utf8'));
export const copyDone = (): Buffer => typed('c');
export const copyFail = (reason: string): Buffer => typed('f', cstr(reason));
export const terminate = (): Buffer => typed('X');

/**
 * One server message as a comparable string: the type, and what identifies
 * the answer (an error's severity and SQLSTATE, a command tag, row values,
 * the transaction status). Message texts and row descriptions are left out.
 */
export function summarize(m: RawMessage): string {
  switch (m.type) {
    case 'E':
    case 'N': {
      const f = errorFields(m.body);
      return `${m.type}:${f.V ?? f.S}:${f.C}`;
    }
    case 'C':
      return `C:${m.body.toString('utf8', 0, Math.max(0, m.body.length - 1))}`;
    case 'Z':
      return `Z:${String.fromCharCode(m.body[0] ?? 0x3f)}`;
    case 'D': {
      const values: string[] = [];
      let pos = 2;
      for (let i = m.body.readInt16BE(0); i > 0; i--) {
        const len = m.body.readInt32BE(pos);
        pos += 4;
        values.push(len < 0 ? 'NULL' : m.body.toString('utf8', pos, pos + len));
        pos += Math.max(0, len);
      }
      return `D:${values.join(',')}`;
    }
    case 'd':
      return `d:${m.body.toString('utf8')}`;
    default:
      return m.type;
  }
}

/** Records every message a connection receives, as it arrives. */
export class Answers {
  readonly messages: RawMessage[] = [];
  closed = false;
  private waiters: (() => void)[] = [];

  constructor(private readonly conn: RawConn) {
    void this.pump();
  }

  private async pump(): Promise<void> {
    try {
      for (;;) {
        const m = await this.conn.message(3_600_000);
        if (!m) break;
        this.messages.push(m);
        this.wake();
      }
    } catch {
      // an unreadable stream counts as closed
    }
    this.closed = true;
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Waits until `pred` holds, the connection closes, or `timeoutMs` pass; returns `pred()`. */
  async until(pred: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!pred() && !this.closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return pred();
  }

  /** Waits until no message arrived for `quietMs` (at most `maxMs`); returns the count then. */
  async quiet(quietMs: number, maxMs: number): Promise<number> {
    const deadline = Date.now() + maxMs;
    let seen = -1;
    while (seen !== this.messages.length && !this.closed && Date.now() < deadline) {
      seen = this.messages.length;
      await this.until(() => this.messages.length > seen, quietMs);
    }
    return this.messages.length;
  }

  get summary(): string[] {
    return this.messages.map(summarize);
  }
}
