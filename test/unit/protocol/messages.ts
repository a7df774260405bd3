// Builders for frontend messages and startup packets, written from the protocol
// docs rather than from src/, so the codec tests compare against an independent layout.
// https://www.postgresql.org/docs/current/protocol-message-formats.html

/** A typed message: Byte1 type, Int32 length (counts itself, not the type), body. */
export function typed(type: string, body: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(5);
  head[0] = type.charCodeAt(0);
  head.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([head, body]);
}

const cstr = (s: string): Buffer => Buffer.from(`${s}\0`, 'utf8');

/** Query (Q): one NUL-terminated SQL string. */
export const query = (sql: string): Buffer => typed('Q', cstr(sql));

/** Parse (P): statement name, SQL, Int16 count of parameter types, Int32 OIDs. */
export function parse(name: string, sql: string, oids: number[]): Buffer {
  const types = Buffer.alloc(2 + 4 * oids.length);
  types.writeInt16BE(oids.length, 0);
  oids.forEach((oid, i) => types.writeInt32BE(oid, 2 + 4 * i));
  return typed('P', Buffer.concat([cstr(name), cstr(sql), types]));
}

/** Sync (S): length 4, no body. */
export const sync = (): Buffer => typed('S');

/** Terminate (X): length 4, no body. */
export const terminate = (): Buffer => typed('X');

/** DataRow (D): Int16 column count, then Int32 length + bytes per column. */
export function dataRow(columns: Buffer[]): Buffer {
  const parts: Buffer[] = [Buffer.alloc(2)];
  parts[0]!.writeInt16BE(columns.length, 0);
  for (const c of columns) {
    const len = Buffer.alloc(4);
    len.writeInt32BE(c.length, 0);
    parts.push(len, c);
  }
  return typed('D', Buffer.concat(parts));
}

/** A deterministic non-repeating-looking payload, so a misplaced byte shows. */
export function pattern(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** An untyped first packet: Int32 length (counts itself), Int32 code, body. */
export function firstPacket(code: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(code, 4);
  return Buffer.concat([head, body]);
}

/** StartupMessage body: name/value pairs, each NUL-terminated, then one more NUL. */
export function startupBody(params: ReadonlyArray<readonly [string, string]>, terminator = true): Buffer {
  const text = params.map(([k, v]) => `${k}\0${v}\0`).join('') + (terminator ? '\0' : '');
  return Buffer.from(text, 'utf8');
}

export const protocolCode = (major: number, minor: number): number => (major << 16) | minor;
