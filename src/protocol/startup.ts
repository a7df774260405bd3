// Decoding of the untyped first packet a client sends: Int32 length (counting
// itself), Int32 code, body. Bounded before any byte is buffered.
// https://www.postgresql.org/docs/current/protocol-message-formats.html (StartupMessage,
// SSLRequest, GSSENCRequest, CancelRequest)

export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;
export const PROTOCOL_3_0 = 196608;

/** PostgreSQL's own limit for a startup packet (MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_LENGTH = 10_000;

/** PostgreSQL's NAMEDATALEN: a name (role, database) holds at most NAMEDATALEN - 1 = 63 bytes. */
export const NAMEDATALEN = 64;
/** Startup parameters that name a role or a database, and so are clipped to a name's length. */
const NAME_PARAMETERS = new Set(['user', 'database']);

export type FirstPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; processId: number; secretKey: number }
  | {
      kind: 'startup';
      major: number;
      minor: number;
      /** Ordinary parameters, in the order sent (user, database, options, GUCs). */
      params: Map<string, string>;
      /** `_pq_.` protocol extension options, which we do not support. */
      protocolOptions: string[];
    };

export class StartupPacketError extends Error {}

/** Accumulates the first packet from as many chunks as it takes. */
export class StartupReader {
  private buf: Buffer = Buffer.alloc(0);

  /**
   * Adds bytes; returns the packet and whatever followed it once complete, else null.
   * Throws StartupPacketError on a bad length.
   */
  push(chunk: Buffer): { packet: Buffer; rest: Buffer } | null {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.buf.length < 4) return null;
    const length = this.buf.readInt32BE(0);
    if (length < 8 || length > MAX_STARTUP_LENGTH) {
      throw new StartupPacketError(`invalid length of startup packet`);
    }
    if (this.buf.length < length) return null;
    const packet = this.buf.subarray(0, length);
    const rest = this.buf.subarray(length);
    this.buf = Buffer.alloc(0);
    return { packet, rest };
  }

  get buffered(): number {
    return this.buf.length;
  }
}

export function decodeFirstPacket(packet: Buffer): FirstPacket {
  const code = packet.readInt32BE(4);
  if (code === SSL_REQUEST_CODE && packet.length === 8) return { kind: 'ssl' };
  if (code === GSSENC_REQUEST_CODE && packet.length === 8) return { kind: 'gssenc' };
  if (code === CANCEL_REQUEST_CODE) {
    if (packet.length !== 16) throw new StartupPacketError('invalid length of cancel request');
    return { kind: 'cancel', processId: packet.readInt32BE(8), secretKey: packet.readInt32BE(12) };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== 3) {
    throw new StartupPacketError(`unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.0`);
  }
  return { kind: 'startup', major, minor, ...decodeParams(packet) };
}

function decodeParams(packet: Buffer): { params: Map<string, string>; protocolOptions: string[] } {
  const params = new Map<string, string>();
  const protocolOptions: string[] = [];
  let pos = 8;
  for (;;) {
    const nameEnd = packet.indexOf(0, pos);
    if (nameEnd < 0) throw new StartupPacketError('invalid startup packet layout: expected terminator as last byte');
    if (nameEnd === pos) break; // the empty name that ends the list
    const valueEnd = packet.indexOf(0, nameEnd + 1);
    if (valueEnd < 0) throw new StartupPacketError('invalid startup packet layout: expected terminator as last byte');
    const name = packet.toString('utf8', pos, nameEnd);
    const value = NAME_PARAMETERS.has(name) ? clipName(packet.subarray(nameEnd + 1, valueEnd)) : packet.toString('utf8', nameEnd + 1, valueEnd);
    if (name.startsWith('_pq_.')) protocolOptions.push(name);
    else params.set(name, value);
    pos = valueEnd + 1;
  }
  if (pos !== packet.length - 1) {
    throw new StartupPacketError('invalid startup packet layout: expected terminator as last byte');
  }
  return { params, protocolOptions };
}

/**
 * A role or database name as PostgreSQL stores it: at most NAMEDATALEN - 1
 * bytes, cut at a UTF-8 character boundary. ProcessStartupPacket
 * (src/backend/tcop/backend_startup.c) truncates the startup's user and
 * database to NAMEDATALEN - 1 bytes "to avoid lookup failures when overlength
 * names are given"; names are stored by truncate_identifier
 * (src/backend/parser/scansup.c), which clips with pg_mbcliplen so as not to
 * split a character. We clip the way names are stored, so that the name we
 * look up and send upstream is the one CREATE ROLE / CREATE DATABASE made
 * (PostgreSQL's byte cut could leave half a character that matches nothing).
 */
export function clipName(bytes: Buffer): string {
  const limit = NAMEDATALEN - 1;
  if (bytes.length <= limit) return bytes.toString('utf8');
  const clipped = bytes.toString('utf8', 0, utf8ClipLength(bytes, limit));
  // Invalid bytes decode to U+FFFD (3 bytes each): clip the valid re-encoding once more.
  const again = Buffer.from(clipped, 'utf8');
  return again.length <= limit ? clipped : again.toString('utf8', 0, utf8ClipLength(again, limit));
}

/** pg_mbcliplen for UTF-8: the longest prefix of at most `limit` bytes that ends on a character boundary. */
function utf8ClipLength(bytes: Buffer, limit: number): number {
  let len = 0;
  while (len < bytes.length) {
    const next = len + utf8CharLength(bytes[len]!);
    if (next > limit) break;
    len = next;
  }
  return len;
}

/** pg_utf_mblen: a character's length from its first byte (a stray continuation byte counts as one). */
function utf8CharLength(first: number): number {
  if (first < 0x80) return 1;
  if ((first & 0xe0) === 0xc0) return 2;
  if ((first & 0xf0) === 0xe0) return 3;
  if ((first & 0xf8) === 0xf0) return 4;
  return 1;
}
