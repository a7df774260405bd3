// Properties of every decoder that reads bytes a client (or a server) chose:
// for any input the result is a value or one typed error from our catalog,
// never a RangeError/TypeError escaping from Buffer arithmetic, never a read
// past the frame it was given, never a buffer larger than the bound.
// numRuns are sized so that the whole file runs in a few seconds.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Framer, FrameLengthError, FrameTooLargeError, type FrameSink } from '../../../src/protocol/framer.js';
import { decodeFirstPacket, MAX_STARTUP_LENGTH, StartupPacketError, StartupReader } from '../../../src/protocol/startup.js';
import { bindStatement, buildParse, parseName, queryText, replaceName, targetOf } from '../../../src/protocol/frontend.js';
import { decodeBase64, parseAttributes, ScramSyntaxError, unescapeSaslName, buildScramVerifier } from '../../../src/auth/scram.js';
import { ScramServerExchange } from '../../../src/auth/scram-server.js';
import { parseVerifier } from '../../../src/auth/verifier.js';
import { decodeErrorFields } from '../../../src/pool/server-login.js';
import { firstPacket, startupBody, typed } from './messages.js';

const RUNS = { numRuns: 300 };

// ---- helpers ------------------------------------------------------------------

/** Error classes of the language itself: thrown by them, an error was not foreseen. */
const UNTYPED: readonly Function[] = [Error, RangeError, TypeError, ReferenceError, SyntaxError, EvalError, URIError, AggregateError];

/** Runs `fn`; returns its value, or the error if it is one of ours, and fails on an untyped one. */
function valueOrTypedError<T>(fn: () => T, what: string): T | Error {
  try {
    return fn();
  } catch (err) {
    const ctor = (err as object | null)?.constructor;
    if (!(err instanceof Error) || UNTYPED.includes(ctor as Function)) {
      throw new Error(`${what} threw an untyped ${(ctor as Function | undefined)?.name ?? typeof err}: ${String((err as Error)?.message ?? err)}`);
    }
    return err;
  }
}

/** Bytes with many NULs (and some 0xff), so that cstrings both end and run on. */
const bytes = (maxLength: number): fc.Arbitrary<Buffer> =>
  fc.array(fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 0, max: 255 }) }, { weight: 1, arbitrary: fc.constantFrom(0, 0, 0xff) }), { maxLength }).map((a) => Buffer.from(a));

/** Sorted cut points inside [0, n]. */
const cuts = (n: number): fc.Arbitrary<number[]> => fc.uniqueArray(fc.integer({ min: 0, max: n }), { maxLength: 12 }).map((a) => a.sort((x, y) => x - y));

/** A value and cut points inside its byte length, shrinking together. */
const withCuts = <T>(arb: fc.Arbitrary<T>, size: (v: T) => number): fc.Arbitrary<[T, number[]]> => arb.chain((v) => fc.tuple(fc.constant(v), cuts(size(v))));

function split(buf: Buffer, at: number[]): Buffer[] {
  const parts: Buffer[] = [];
  let prev = 0;
  for (const c of [...at, buf.length]) {
    if (c > prev) parts.push(buf.subarray(prev, c));
    prev = Math.max(prev, c);
  }
  return parts;
}

/** Every Buffer a framer keeps, whatever its private fields are called: none may exceed the bound. */
function largestHeldBuffer(framer: Framer): number {
  let max = 0;
  for (const v of Object.values(framer as unknown as Record<string, unknown>)) if (Buffer.isBuffer(v)) max = Math.max(max, v.length);
  return max;
}

interface Collected {
  frames: Buffer[];
  /** Pieces of streamed frames, concatenated per frame. */
  streamed: Buffer[];
}

function collector(): FrameSink & Collected {
  const frames: Buffer[] = [];
  const streamed: Buffer[] = [];
  let piece: Buffer[] = [];
  return {
    frames,
    streamed,
    onFrame(_type, buf, start, end) {
      frames.push(Buffer.from(buf.subarray(start, end)));
    },
    onFramePart(_type, buf, start, end, last) {
      piece.push(Buffer.from(buf.subarray(start, end)));
      if (last) {
        streamed.push(Buffer.concat(piece));
        frames.push(streamed[streamed.length - 1]!);
        piece = [];
      }
    },
  };
}

/** A frame whose body is arbitrary: any type byte, correct length. */
const frameArb = fc.record({ type: fc.integer({ min: 0, max: 255 }), body: bytes(300) }).map(({ type, body }) => typed(String.fromCharCode(type), body));

// ---- framer -----------------------------------------------------------------

describe('Framer', () => {
  it('a stream of frames split at random offsets yields the same frames as unsplit', () => {
    fc.assert(
      fc.property(withCuts(fc.array(frameArb, { maxLength: 12 }), (fs) => Buffer.concat(fs).length), ([frames, at]) => {
        const stream = Buffer.concat(frames);
        const whole = collector();
        new Framer(1 << 16).push(stream, whole);
        const pieces = collector();
        const framer = new Framer(1 << 16);
        for (const p of split(stream, at)) framer.push(p, pieces);
        expect(whole.frames).toEqual(frames);
        expect(pieces.frames).toEqual(frames);
        expect(framer.buffered).toBe(0);
      }),
      RUNS,
    );
  });

  it('pass-through types streamed in pieces still add up to the same frames, in order', () => {
    const D = 0x44;
    const dataRowsOrNot = fc.array(fc.tuple(frameArb, fc.boolean()), { maxLength: 10 }).map((fs) => fs.map(([f, asDataRow]) => (asDataRow ? Buffer.concat([Buffer.from([D]), f.subarray(1)]) : f)));
    fc.assert(
      fc.property(withCuts(dataRowsOrNot, (fs) => Buffer.concat(fs).length), ([input, at]) => {
        const stream = Buffer.concat(input);
        const sink = collector();
        const framer = new Framer(1 << 16, (t) => t === D);
        for (const p of split(stream, at)) framer.push(p, sink);
        expect(sink.frames).toEqual(input);
      }),
      RUNS,
    );
  });

  it('random garbage: only FrameLengthError / FrameTooLargeError, and nothing held beyond the bound', () => {
    fc.assert(
      fc.property(withCuts(bytes(2000), (g) => g.length), fc.integer({ min: 5, max: 1500 }), ([garbage, at], max) => {
        const framer = new Framer(max);
        const sink: FrameSink = {
          onFrame(_type, buf, start, end) {
            const length = buf.readInt32BE(start + 1);
            expect(length).toBeGreaterThanOrEqual(4);
            expect(length).toBeLessThanOrEqual(max);
            expect(end - start).toBe(1 + length);
          },
        };
        for (const p of split(garbage, at)) {
          try {
            framer.push(p, sink);
          } catch (err) {
            expect(err instanceof FrameLengthError || err instanceof FrameTooLargeError, String(err)).toBe(true);
            return; // the stream is unusable afterwards, by contract
          }
          // A partial frame never holds more than one frame's bytes: type byte + length ≤ max.
          expect(framer.buffered).toBeLessThanOrEqual(1 + max);
          expect(largestHeldBuffer(framer)).toBeLessThanOrEqual(Math.max(1 + max, 16 * 1024));
        }
      }),
      RUNS,
    );
  });

  it('a header that announces the bound does not allocate the bound before the bytes come', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1 << 20, max: 1 << 30 }), bytes(64), (length, start) => {
        const framer = new Framer(1 << 30);
        const head = Buffer.alloc(5);
        head[0] = 0x51;
        head.writeInt32BE(length, 1);
        framer.push(Buffer.concat([head, start]), { onFrame: () => undefined });
        expect(largestHeldBuffer(framer)).toBeLessThanOrEqual(64 * 1024);
      }),
      { numRuns: 50 },
    );
  });
});

// ---- startup ----------------------------------------------------------------

/** A first packet as a stranger might send it: a plausible length and code, then anything. */
const firstPacketArb = fc.oneof(
  bytes(64),
  fc
    .record({
      code: fc.constantFrom(80877103, 80877104, 80877102, 196608, 196609, 0x20000, 0, -1, 0x7fffffff),
      body: bytes(200),
      lie: fc.integer({ min: -20, max: 20 }),
    })
    .map(({ code, body, lie }) => {
      const p = firstPacket(code, body);
      p.writeInt32BE(p.length + lie, 0); // lengths that lie by a little
      return p;
    }),
  fc
    .array(fc.tuple(fc.string({ maxLength: 12 }), fc.string({ maxLength: 12 })), { maxLength: 6 })
    .map((params) => firstPacket(196608, startupBody(params))),
  fc.integer().map((n) => {
    const b = Buffer.alloc(8);
    b.writeInt32BE(n, 0); // any length at all, zero and negative included
    b.writeInt32BE(196608, 4);
    return b;
  }),
);

describe('StartupReader and decodeFirstPacket', () => {
  it('random bytes split at random offsets: a packet, null, or StartupPacketError; never more than the limit buffered', () => {
    fc.assert(
      fc.property(withCuts(fc.array(firstPacketArb, { minLength: 1, maxLength: 3 }), (ps) => Buffer.concat(ps).length), ([packets, at]) => {
        const stream = Buffer.concat(packets);
        const reader = new StartupReader();
        for (const p of split(stream, at)) {
          const r = valueOrTypedError(() => reader.push(p), 'StartupReader.push');
          if (r instanceof Error) {
            expect(r).toBeInstanceOf(StartupPacketError);
            return;
          }
          if (r === null) {
            expect(reader.buffered).toBeLessThan(MAX_STARTUP_LENGTH);
            continue;
          }
          expect(r.packet.length).toBeGreaterThanOrEqual(8);
          expect(r.packet.length).toBeLessThanOrEqual(MAX_STARTUP_LENGTH);
          const first = valueOrTypedError(() => decodeFirstPacket(r.packet), 'decodeFirstPacket');
          if (first instanceof Error) expect(first).toBeInstanceOf(StartupPacketError);
          else expect(['ssl', 'gssenc', 'cancel', 'startup']).toContain(first.kind);
          return; // the handshake decides what follows the first packet
        }
      }),
      { numRuns: 500 },
    );
  });

  it('any buffer of 8 bytes or more: a FirstPacket or StartupPacketError', () => {
    fc.assert(
      fc.property(firstPacketArb.filter((b) => b.length >= 8), (packet) => {
        const first = valueOrTypedError(() => decodeFirstPacket(packet), 'decodeFirstPacket');
        if (first instanceof Error) expect(first).toBeInstanceOf(StartupPacketError);
      }),
      { numRuns: 500 },
    );
  });

  it('a well-formed StartupMessage decodes to its parameters', () => {
    const name = fc.string({ minLength: 1, maxLength: 16 }).filter((s) => !s.includes('\0') && !s.startsWith('_pq_.'));
    const value = fc.string({ maxLength: 16 }).filter((s) => !s.includes('\0'));
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(name, value), { selector: ([k]) => k, maxLength: 6 }), (params) => {
        const first = decodeFirstPacket(firstPacket(196608, startupBody(params)));
        expect(first.kind).toBe('startup');
        if (first.kind === 'startup') expect([...first.params]).toEqual(params);
      }),
      RUNS,
    );
  });
});

// ---- frontend decoders (Parse, Bind, Describe/Close, Query) -----------------

/** A frame of `type` with an arbitrary body, with arbitrary bytes before and after it in the same buffer. */
const framedIn = (type: string) =>
  fc.record({ before: bytes(8), body: bytes(80), after: bytes(8) }).map(({ before, body, after }) => {
    const frame = typed(type, body);
    return { buf: Buffer.concat([before, frame, after]), start: before.length, end: before.length + frame.length };
  });

const cstringName = fc.string({ maxLength: 20 }).filter((s) => !s.includes('\0'));

describe('frontend decoders on malformed bodies', () => {
  // Each decoder, on any body: a result within the frame, or a typed error.
  // Today parseName, bindStatement and targetOf throw RangeError: a defect (issue 8).
  it('parseName: a name and rest inside the frame, or a typed error', () => {
    fc.assert(
      fc.property(framedIn('P'), ({ buf, start, end }) => {
        const r = valueOrTypedError(() => parseName(buf, start, end), 'parseName');
        if (r instanceof Error) return;
        expect(r.name.includes('\0')).toBe(false);
        expect(Buffer.byteLength(r.name, 'latin1') + 1 + r.rest.length).toBe(end - start - 5);
      }),
      RUNS,
    );
  });

  it('bindStatement: a name lying inside the frame, or a typed error', () => {
    fc.assert(
      fc.property(framedIn('B'), ({ buf, start, end }) => {
        const r = valueOrTypedError(() => bindStatement(buf, start, end), 'bindStatement');
        if (r instanceof Error) return;
        expect(r.nameStart).toBeGreaterThan(start + 5);
        expect(r.nameEnd).toBeLessThan(end);
        expect(buf[r.nameEnd]).toBe(0);
      }),
      RUNS,
    );
  });

  it('targetOf: a kind byte and a name inside the frame, or a typed error', () => {
    fc.assert(
      fc.property(fc.constantFrom('D', 'C').chain(framedIn), ({ buf, start, end }) => {
        const r = valueOrTypedError(() => targetOf(buf, start, end), 'targetOf');
        if (r instanceof Error) return;
        expect(typeof r.kind).toBe('number');
        expect(r.nameStart).toBe(start + 6);
        expect(r.nameEnd).toBeLessThan(end);
      }),
      RUNS,
    );
  });

  it('queryText: never throws, never reads past the frame', () => {
    fc.assert(
      fc.property(framedIn('Q'), ({ buf, start, end }) => {
        const text = queryText(buf, start, end);
        expect(typeof text).toBe('string');
        expect(Buffer.byteLength(text)).toBeLessThanOrEqual(Math.max(0, end - start - 5) * 3); // replacement chars widen at most 3x
      }),
      RUNS,
    );
  });

  it('the issue 8 bodies: zero-length and truncated Parse/Bind/Describe/Close', () => {
    // `51 00 00 00 00` is refused by the framer; these pass it (length 4 and up) and reach the decoders.
    const untyped: string[] = [];
    for (const type of ['P', 'B', 'D', 'C']) {
      for (const body of [Buffer.alloc(0), Buffer.from([0x53]), Buffer.from('abc'), Buffer.from([0])]) {
        const frame = typed(type, body);
        const decode = { P: parseName, B: bindStatement, D: targetOf, C: targetOf }[type]!;
        try {
          valueOrTypedError(() => decode(frame, 0, frame.length), `${decode.name}(${type} ${body.toString('hex') || 'empty'})`);
        } catch (err) {
          untyped.push((err as Error).message);
        }
      }
    }
    expect(untyped).toEqual([]);
  });
});

describe('frontend rewrites on well-formed messages', () => {
  it('Parse: buildParse and parseName round-trip', () => {
    fc.assert(
      fc.property(cstringName, bytes(60), (name, rest) => {
        const msg = buildParse(name, rest);
        expect(msg.readInt32BE(1)).toBe(msg.length - 1);
        const r = parseName(msg, 0, msg.length);
        expect(r.name).toBe(name);
        expect(r.rest.equals(rest)).toBe(true);
      }),
      RUNS,
    );
  });

  it('Bind: replaceName gives a frame with a right length whose statement is the new name', () => {
    fc.assert(
      fc.property(cstringName, cstringName, cstringName, bytes(40), (portal, stmt, renamed, tail) => {
        const frame = typed('B', Buffer.concat([Buffer.from(`${portal}\0${stmt}\0`), tail]));
        const found = bindStatement(frame, 0, frame.length);
        expect(found.name).toBe(stmt);
        const out = replaceName(frame, 0, frame.length, found.nameStart, found.nameEnd, renamed);
        expect(out.readInt32BE(1)).toBe(out.length - 1);
        expect(bindStatement(out, 0, out.length).name).toBe(renamed);
        expect(out.subarray(out.length - tail.length).equals(tail)).toBe(true);
      }),
      RUNS,
    );
  });

  it('Describe/Close: replaceName keeps the kind byte', () => {
    fc.assert(
      fc.property(fc.constantFrom('D', 'C'), fc.constantFrom('S', 'P'), cstringName, cstringName, (type, kind, name, renamed) => {
        const frame = typed(type, Buffer.from(`${kind}${name}\0`));
        const t = targetOf(frame, 0, frame.length);
        const out = replaceName(frame, 0, frame.length, t.nameStart, t.nameEnd, renamed);
        const again = targetOf(out, 0, out.length);
        expect([String.fromCharCode(again.kind), again.name]).toEqual([kind, renamed]);
        expect(out.readInt32BE(1)).toBe(out.length - 1);
      }),
      RUNS,
    );
  });
});

// ---- SCRAM ------------------------------------------------------------------

describe('SCRAM decoders', () => {
  it('parseAttributes: a list of single-letter attributes, or ScramSyntaxError', () => {
    const text = fc.oneof(fc.string({ maxLength: 60 }), fc.array(fc.constantFrom('a', 'n', 'r', '=', ',', 'x=', 'p=', '\0', 'é'), { maxLength: 20 }).map((a) => a.join('')));
    fc.assert(
      fc.property(text, (t) => {
        const r = valueOrTypedError(() => parseAttributes(t), 'parseAttributes');
        if (r instanceof Error) {
          expect(r).toBeInstanceOf(ScramSyntaxError);
          expect(r.message.length).toBeLessThan(120); // never echoes the input
          return;
        }
        expect(r.map((a) => `${a.key}=${a.value}`).join(',')).toBe(t);
      }),
      { numRuns: 1000 },
    );
  });

  it('decodeBase64, unescapeSaslName, parseVerifier: a value or null, never an exception', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (s) => {
        const b = decodeBase64(s);
        expect(b === null || Buffer.isBuffer(b)).toBe(true);
        const n = unescapeSaslName(s);
        expect(n === null || typeof n === 'string').toBe(true);
        const v = parseVerifier(s);
        expect(v === null || v.kind === 'md5' || v.kind === 'scram-sha-256').toBe(true);
        const w = parseVerifier(`SCRAM-SHA-256$${s}`);
        expect(w === null || w.kind === 'scram-sha-256').toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it('ScramServerExchange: random client-first and client-final data give result values, never exceptions', () => {
    const verifier = buildScramVerifier('pw', Buffer.from('0123456789abcdef'), 1);
    const clientFirst = fc.oneof(
      bytes(120),
      fc.tuple(fc.constantFrom('n,,', 'y,,', 'p=tls-server-end-point,,', 'p=x,,', 'n,a=u,', ',,', ''), fc.string({ maxLength: 60 })).map(([h, b]) => Buffer.from(h + b, 'latin1')),
      fc.string({ maxLength: 30 }).map((r) => Buffer.from(`n,,n=,r=${r}`, 'latin1')),
    );
    const clientFinal = fc.oneof(bytes(150), fc.tuple(fc.constantFrom('c=biws,r=', 'c=,r=', 'r=', 'c=biws,p='), fc.string({ maxLength: 80 })).map(([h, b]) => Buffer.from(h + b, 'latin1')));
    fc.assert(
      fc.property(fc.constantFrom('SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS', '', 'x'), clientFirst, clientFinal, fc.boolean(), (mech, first, final, known) => {
        const ex = new ScramServerExchange(known ? verifier : null, { channelBinding: Buffer.alloc(32, 1), serverNonce: 'srvnonce' });
        const a = valueOrTypedError(() => ex.clientFirst(mech, first), 'ScramServerExchange.clientFirst');
        expect(a).not.toBeInstanceOf(Error);
        const b = valueOrTypedError(() => ex.clientFinal(final), 'ScramServerExchange.clientFinal');
        expect(b).not.toBeInstanceOf(Error);
        if (!(b instanceof Error)) expect(b.ok).toBe(false); // nobody guesses a proof
      }),
      { numRuns: 400 },
    );
  });
});

// ---- server ErrorResponse / NoticeResponse ------------------------------------

describe('decodeErrorFields', () => {
  it('random bodies: a map of fields without NULs, never an exception', () => {
    fc.assert(
      fc.property(bytes(300), (body) => {
        const fields = decodeErrorFields(body);
        expect(fields.size).toBeLessThanOrEqual(Math.ceil(body.length / 2));
        for (const [k, v] of fields) {
          expect(k.length).toBe(1);
          expect(v.includes('\0')).toBe(false);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('a well-formed body decodes to its fields', () => {
    const code = fc.constantFrom('S', 'V', 'C', 'M', 'D', 'H', 'P', 'W');
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(code, fc.string({ maxLength: 30 }).filter((s) => !s.includes('\0'))), { selector: ([k]) => k }), (fields) => {
        const body = Buffer.from(fields.map(([k, v]) => `${k}${v}\0`).join('') + '\0');
        expect([...decodeErrorFields(body)]).toEqual(fields);
      }),
      RUNS,
    );
  });
});
