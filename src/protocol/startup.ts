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
    const value = packet.toString('utf8', nameEnd + 1, valueEnd);
    if (name.startsWith('_pq_.')) protocolOptions.push(name);
    else params.set(name, value);
    pos = valueEnd + 1;
  }
  if (pos !== packet.length - 1) {
    throw new StartupPacketError('invalid startup packet layout: expected terminator as last byte');
  }
  return { params, protocolOptions };
}
