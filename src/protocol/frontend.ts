// The few frontend messages pooling opens: Parse, Bind, Describe and Close name
// prepared statements, which transaction pooling renames per server.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
// Offsets are into `buf[start, end)`, a whole frame (type byte and length included).
// Statement and portal names decode as latin1: one character per byte, so two
// different byte strings never become one key (UTF-8 decoding would merge invalid bytes).

const BODY = 5;

/** A frontend message whose body does not have the layout its type requires (the client gets 08P01). */
export class MalformedMessageError extends Error {}

/** Parse: statement name, then query text and parameter types (kept as bytes). */
export function parseName(buf: Buffer, start: number, end: number): { name: string; rest: Buffer } {
  const nameEnd = buf.indexOf(0, start + BODY);
  if (nameEnd < 0 || nameEnd >= end) throw new MalformedMessageError('malformed Parse message');
  return { name: buf.toString('latin1', start + BODY, nameEnd), rest: buf.subarray(nameEnd + 1, end) };
}

/** A Parse message for `name` with the query text and parameter types of `rest`. */
export function buildParse(name: string, rest: Buffer): Buffer {
  const n = Buffer.byteLength(name);
  const out = Buffer.allocUnsafe(BODY + n + 1 + rest.length);
  out[0] = 0x50; // 'P'
  out.writeInt32BE(4 + n + 1 + rest.length, 1);
  out.write(name, BODY);
  out[BODY + n] = 0;
  rest.copy(out, BODY + n + 1);
  return out;
}

/** Bind: portal name, then the statement name. Returns the statement name and where it lies. */
export function bindStatement(buf: Buffer, start: number, end: number): { name: string; nameStart: number; nameEnd: number } {
  const portalEnd = buf.indexOf(0, start + BODY);
  if (portalEnd < 0 || portalEnd >= end) throw new MalformedMessageError('malformed Bind message');
  const nameEnd = buf.indexOf(0, portalEnd + 1);
  if (nameEnd < 0 || nameEnd >= end) throw new MalformedMessageError('malformed Bind message');
  return { name: buf.toString('latin1', portalEnd + 1, nameEnd), nameStart: portalEnd + 1, nameEnd };
}

/** Rewrites the cstring at [nameStart, nameEnd) of a frame to `name`, fixing the length. */
export function replaceName(buf: Buffer, start: number, end: number, nameStart: number, nameEnd: number, name: string): Buffer {
  const n = Buffer.byteLength(name);
  const size = end - start - (nameEnd - nameStart) + n;
  const out = Buffer.allocUnsafe(size);
  buf.copy(out, 0, start, nameStart);
  out.write(name, nameStart - start);
  buf.copy(out, nameStart - start + n, nameEnd, end);
  out.writeInt32BE(size - 1, 1);
  return out;
}

/** Describe and Close: 'S' (statement) or 'P' (portal), then the name. */
export function targetOf(buf: Buffer, start: number, end: number): { kind: number; name: string; nameStart: number; nameEnd: number } {
  if (end - start < BODY + 2) throw new MalformedMessageError('malformed Describe/Close message');
  const kind = buf[start + BODY]!;
  const nameStart = start + BODY + 1;
  const nameEnd = buf.indexOf(0, nameStart);
  if (nameEnd < 0 || nameEnd >= end) throw new MalformedMessageError('malformed Describe/Close message');
  return { kind, name: buf.toString('latin1', nameStart, nameEnd), nameStart, nameEnd };
}

/** Close of a statement: used for evictions, and with a never-used name as a no-op that still answers CloseComplete. */
export function buildCloseStatement(name: string): Buffer {
  const n = Buffer.byteLength(name);
  const out = Buffer.allocUnsafe(BODY + 1 + n + 1);
  out[0] = 0x43; // 'C'
  out.writeInt32BE(4 + 1 + n + 1, 1);
  out[BODY] = 0x53; // 'S'
  out.write(name, BODY + 1);
  out[BODY + 1 + n] = 0;
  return out;
}

/** The text of a simple Query message (without its NUL). */
export function queryText(buf: Buffer, start: number, end: number): string {
  return buf.toString('utf8', start + BODY, Math.max(start + BODY, end - 1));
}
