// The untyped first packet (src/protocol/startup.ts): accumulation across chunks,
// bounds checked before buffering, and decoding of each request kind.
import { describe, it, expect } from 'vitest';
import {
  CANCEL_REQUEST_CODE,
  GSSENC_REQUEST_CODE,
  MAX_STARTUP_LENGTH,
  NAMEDATALEN,
  PROTOCOL_3_0,
  SSL_REQUEST_CODE,
  StartupPacketError,
  StartupReader,
  clipName,
  decodeFirstPacket,
} from '../../../src/protocol/startup.js';
import { firstPacket, protocolCode, query, startupBody } from './messages.js';

const PARAMS = [
  ['user', 'alice'],
  ['database', 'app'],
  ['application_name', 'psql ☕'],
  ['options', '-c search_path=a,b'],
  ['client_encoding', 'UTF8'],
] as const;
const STARTUP = firstPacket(PROTOCOL_3_0, startupBody(PARAMS));

// The well-known codes are the docs' 1234.5679 / 1234.5680 / 1234.5678 and 3.0.
describe('startup: request codes', () => {
  it('matches the codes in the protocol docs', () => {
    expect(SSL_REQUEST_CODE).toBe(protocolCode(1234, 5679));
    expect(GSSENC_REQUEST_CODE).toBe(protocolCode(1234, 5680));
    expect(CANCEL_REQUEST_CODE).toBe(protocolCode(1234, 5678));
    expect(PROTOCOL_3_0).toBe(protocolCode(3, 0));
  });
});

// Each kind of first packet decodes to what the client meant.
describe('decodeFirstPacket', () => {
  it('decodes SSLRequest (8 bytes: length 8, code 80877103)', () => {
    expect(decodeFirstPacket(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]))).toEqual({ kind: 'ssl' });
  });

  it('decodes GSSENCRequest', () => {
    expect(decodeFirstPacket(firstPacket(GSSENC_REQUEST_CODE))).toEqual({ kind: 'gssenc' });
  });

  it('decodes a 16-byte CancelRequest, keeping a negative secret signed', () => {
    const body = Buffer.alloc(8);
    body.writeInt32BE(4242, 0);
    body.writeInt32BE(-559038737, 4); // 0xDEADBEEF
    const packet = firstPacket(CANCEL_REQUEST_CODE, body);
    expect(packet.length).toBe(16);
    expect(decodeFirstPacket(packet)).toEqual({ kind: 'cancel', processId: 4242, secretKey: -559038737 });
  });

  it('refuses a CancelRequest of any other length with PostgreSQL wording', () => {
    for (const extra of [0, 4, 12]) {
      expect(() => decodeFirstPacket(firstPacket(CANCEL_REQUEST_CODE, Buffer.alloc(extra)))).toThrow(
        new StartupPacketError('invalid length of cancel request'),
      );
    }
  });

  it('decodes a 3.0 StartupMessage with its parameters in the order sent', () => {
    const got = decodeFirstPacket(STARTUP);
    expect(got).toEqual({ kind: 'startup', major: 3, minor: 0, params: new Map(PARAMS), protocolOptions: [] });
    if (got.kind !== 'startup') throw new Error('unreachable');
    expect([...got.params.keys()]).toEqual(PARAMS.map(([k]) => k));
    expect(got.params.get('application_name')).toBe('psql ☕');
  });

  it('keeps an empty value and accepts a packet with no parameters at all', () => {
    const got = decodeFirstPacket(firstPacket(PROTOCOL_3_0, startupBody([['user', 'u'], ['application_name', '']])));
    expect(got).toMatchObject({ kind: 'startup', params: new Map([['user', 'u'], ['application_name', '']]) });
    expect(decodeFirstPacket(firstPacket(PROTOCOL_3_0, startupBody([])))).toMatchObject({ kind: 'startup', params: new Map() });
  });

  it('reports the 3.2 minor version for the caller to negotiate', () => {
    const got = decodeFirstPacket(firstPacket(protocolCode(3, 2), startupBody([['user', 'u']])));
    expect(got).toMatchObject({ kind: 'startup', major: 3, minor: 2 });
  });

  it('separates _pq_. protocol options from ordinary parameters', () => {
    const got = decodeFirstPacket(
      firstPacket(
        protocolCode(3, 2),
        startupBody([
          ['user', 'u'],
          ['_pq_.compression', 'on'],
          ['database', 'd'],
          ['_pq_.other', ''],
        ]),
      ),
    );
    expect(got).toEqual({
      kind: 'startup',
      major: 3,
      minor: 2,
      params: new Map([
        ['user', 'u'],
        ['database', 'd'],
      ]),
      protocolOptions: ['_pq_.compression', '_pq_.other'],
    });
  });
});

// PostgreSQL keeps a name to NAMEDATALEN - 1 = 63 bytes (ProcessStartupPacket truncates the
// startup's user and database; truncate_identifier stores names clipped by pg_mbcliplen).
describe('decodeFirstPacket: user and database names longer than a PostgreSQL name', () => {
  const decodeParams = (params: ReadonlyArray<readonly [string, string]>): Map<string, string> => {
    const got = decodeFirstPacket(firstPacket(PROTOCOL_3_0, startupBody(params)));
    if (got.kind !== 'startup') throw new Error('not a startup packet');
    return got.params;
  };
  const bytes = (s: string | undefined): number => Buffer.byteLength(s ?? '', 'utf8');

  it('keeps names of exactly 63 bytes whole and clips longer ones to their first 63 bytes', () => {
    expect(NAMEDATALEN).toBe(64);
    const params = decodeParams([
      ['user', 'u'.repeat(63)],
      ['database', 'd'.repeat(9000)],
    ]);
    expect(params.get('user')).toBe('u'.repeat(63));
    expect(params.get('database')).toBe('d'.repeat(63));
  });

  it('clips at a UTF-8 character boundary, never through a character', () => {
    // 'é' is 2 bytes: 'a' + 31 × 'é' = 63 bytes fits; 'a' + 32 × 'é' = 65 bytes clips back to 63.
    expect(decodeParams([['user', 'a' + 'é'.repeat(31)]]).get('user')).toBe('a' + 'é'.repeat(31));
    expect(decodeParams([['user', 'a' + 'é'.repeat(32)]]).get('user')).toBe('a' + 'é'.repeat(31));
    // 'é' × 32 = 64 bytes: byte 63 would split the 32nd, so 31 remain (62 bytes), as pg_mbcliplen does.
    const even = decodeParams([['database', 'é'.repeat(40)]]).get('database');
    expect(even).toBe('é'.repeat(31));
    expect(bytes(even)).toBe(62);
    // 3-byte '☕' (21 × 3 = 63) and 4-byte '𝄞' (15 × 4 = 60, the 16th would end at 64).
    expect(decodeParams([['user', '☕'.repeat(30)]]).get('user')).toBe('☕'.repeat(21));
    expect(decodeParams([['user', '𝄞'.repeat(20)]]).get('user')).toBe('𝄞'.repeat(15));
  });

  it('leaves other parameters at full length (the 10 000-byte packet bounds them)', () => {
    const long = 'x'.repeat(500);
    expect(decodeParams([['user', 'u'], ['application_name', long]]).get('application_name')).toBe(long);
  });

  it('keeps a name with invalid UTF-8 within 63 bytes once decoded (each bad byte becomes U+FFFD)', () => {
    const name = clipName(Buffer.alloc(200, 0xff));
    expect(bytes(name)).toBeLessThanOrEqual(63);
    expect(name).toBe('\ufffd'.repeat(21));
    // A lead byte with its continuation cut off by the end of the name decodes, clipped as well.
    expect(bytes(clipName(Buffer.concat([Buffer.alloc(62, 0x61), Buffer.from([0xe2, 0x98, 0x95])])))).toBe(62);
  });
});

const TERMINATOR = 'invalid startup packet layout: expected terminator as last byte';

// A malformed packet or an unknown protocol is refused with PostgreSQL's wording.
describe('decodeFirstPacket: malformed packets', () => {
  it('refuses a startup packet missing its final NUL', () => {
    expect(() => decodeFirstPacket(firstPacket(PROTOCOL_3_0, startupBody([['user', 'u']], false)))).toThrow(
      new StartupPacketError(TERMINATOR),
    );
  });

  it('refuses a name with no value, bytes after the terminator, and an empty body', () => {
    const bad = [
      Buffer.from('user\0'),
      Buffer.from('user\0u\0\0junk'),
      Buffer.from('user\0u\0\0\0'),
      Buffer.alloc(0),
    ];
    for (const body of bad) expect(() => decodeFirstPacket(firstPacket(PROTOCOL_3_0, body))).toThrow(new StartupPacketError(TERMINATOR));
  });

  it.each([
    [2, 0, 'unsupported frontend protocol 2.0: server supports 3.0 to 3.0'],
    [4, 0, 'unsupported frontend protocol 4.0: server supports 3.0 to 3.0'],
    [1234, 5681, 'unsupported frontend protocol 1234.5681: server supports 3.0 to 3.0'],
    [1234, 5679, 'unsupported frontend protocol 1234.5679: server supports 3.0 to 3.0'], // SSLRequest code at the wrong length
  ])('refuses protocol %i.%i', (major, minor, wording) => {
    const body = major === 1234 && minor === 5679 ? Buffer.alloc(4) : startupBody([['user', 'u']]);
    expect(() => decodeFirstPacket(firstPacket(protocolCode(major, minor), body))).toThrow(new StartupPacketError(wording));
  });

  it('reads 1234.5678 as a CancelRequest, so a short one is refused as such', () => {
    expect(() => decodeFirstPacket(firstPacket(protocolCode(1234, 5678)))).toThrow(new StartupPacketError('invalid length of cancel request'));
  });
});

const lengthOnly = (length: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(length, 0);
  return b;
};

// The reader returns the whole packet however it is split, and hands back what follows it.
describe('StartupReader', () => {
  const after = query('SELECT 1'); // pipelined bytes the caller must not lose

  it('returns the packet and the rest from one chunk', () => {
    const got = new StartupReader().push(Buffer.concat([STARTUP, after]));
    expect(got?.packet).toEqual(STARTUP);
    expect(got?.rest).toEqual(after);
  });

  it('assembles the packet split at every offset, with the trailing bytes as rest', () => {
    const stream = Buffer.concat([STARTUP, after]);
    for (let k = 0; k < STARTUP.length; k++) {
      const reader = new StartupReader();
      expect(reader.push(stream.subarray(0, k))).toBeNull();
      expect(reader.buffered).toBe(k);
      const got = reader.push(stream.subarray(k));
      expect(got?.packet).toEqual(STARTUP);
      expect(got?.rest).toEqual(after);
      expect(reader.buffered).toBe(0);
    }
  });

  it('returns the packet as soon as it is complete, with only the bytes seen so far as rest', () => {
    const stream = Buffer.concat([STARTUP, after]);
    for (let k = STARTUP.length; k <= stream.length; k++) {
      const got = new StartupReader().push(stream.subarray(0, k));
      expect(got?.packet).toEqual(STARTUP);
      expect(got?.rest).toEqual(after.subarray(0, k - STARTUP.length));
    }
  });

  it('assembles the packet fed one byte at a time', () => {
    const reader = new StartupReader();
    for (let i = 0; i < STARTUP.length - 1; i++) expect(reader.push(STARTUP.subarray(i, i + 1))).toBeNull();
    const got = reader.push(STARTUP.subarray(STARTUP.length - 1));
    expect(got?.packet).toEqual(STARTUP);
    expect(got?.rest.length).toBe(0);
    expect(decodeFirstPacket(got!.packet)).toMatchObject({ kind: 'startup', params: new Map(PARAMS) });
  });

  it('returns an SSLRequest alone and leaves the TLS ClientHello that follows as rest', () => {
    const hello = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]);
    const got = new StartupReader().push(Buffer.concat([firstPacket(SSL_REQUEST_CODE), hello]));
    expect(got?.packet.length).toBe(8);
    expect(got?.rest).toEqual(hello);
  });

  it.each([7, 4, 0, -1, MAX_STARTUP_LENGTH + 1, 0x7fffffff])('throws on length %i as soon as the 4 length bytes arrive', (length) => {
    expect(() => new StartupReader().push(lengthOnly(length))).toThrow(new StartupPacketError('invalid length of startup packet'));
  });

  it('checks the length once the 4th byte arrives, even split 3 + 1', () => {
    const reader = new StartupReader();
    const b = lengthOnly(MAX_STARTUP_LENGTH + 1);
    expect(reader.push(b.subarray(0, 3))).toBeNull();
    expect(() => reader.push(b.subarray(3))).toThrow(StartupPacketError);
  });

  it('accepts lengths 8 and 10000 (PostgreSQL MAX_STARTUP_PACKET_LENGTH)', () => {
    expect(MAX_STARTUP_LENGTH).toBe(10_000);
    expect(new StartupReader().push(lengthOnly(MAX_STARTUP_LENGTH))).toBeNull();
    const got = new StartupReader().push(firstPacket(SSL_REQUEST_CODE));
    expect(got?.packet.length).toBe(8);
  });
});
