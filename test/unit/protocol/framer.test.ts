// The one framer (src/protocol/framer.ts), fed real-looking frontend messages
// split at every offset, in 1-byte chunks and at random cuts, with pauses.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { Framer, FrameLengthError, FrameTooLargeError, type FrameSink } from '../../../src/protocol/framer.js';
import { dataRow, parse, pattern, query, sync, terminate, typed } from './messages.js';

const MAX = 1 << 20;

interface Frame {
  type: number;
  bytes: Buffer;
  buf: Buffer;
  start: number;
  end: number;
}

/** Copies every frame it is handed (the bytes are only valid during the call). */
/** Records accepted frames; `refuse(i)` true holds frame i back once (it comes again on resume). */
function recorder(refuse: (index: number) => boolean = () => false): FrameSink & { frames: Frame[] } {
  const frames: Frame[] = [];
  const refused = new Set<number>();
  return {
    frames,
    onFrame(type, buf, start, end) {
      const i = frames.length;
      if (!refused.has(i) && refuse(i)) {
        refused.add(i);
        return false;
      }
      frames.push({ type, bytes: Buffer.from(buf.subarray(start, end)), buf, start, end });
      return true;
    },
  };
}

/**
 * Compares each frame with the expected message in place, without copying:
 * the split-offset loops below run tens of thousands of times over 40 KB.
 */
function checker(expected: readonly Buffer[]): FrameSink & { count: number } {
  const sink = {
    count: 0,
    onFrame(type: number, buf: Buffer, start: number, end: number): void {
      const want = expected[sink.count];
      if (want === undefined) throw new Error(`unexpected frame #${sink.count} of type ${type}`);
      if (type !== want[0] || end - start !== want.length || !buf.subarray(start, end).equals(want)) {
        throw new Error(`frame #${sink.count} differs: got type ${type}, ${end - start} bytes; want type ${want[0]}, ${want.length} bytes`);
      }
      sink.count++;
    },
  };
  return sink;
}

/** Compares frames by type, length and bytes; Buffer-by-Buffer toEqual is slow on 40 KB. */
function expectFrames(got: readonly Buffer[], want: readonly Buffer[]): void {
  const summary = (bs: readonly Buffer[]) => bs.map((b) => `${String.fromCharCode(b[0] ?? 0x3f)}:${b.length}`);
  expect(summary(got)).toEqual(summary(want));
  got.forEach((b, i) => {
    if (!b.equals(want[i]!)) expect.fail(`frame #${i} (${summary([b])[0]}) has the right length but different bytes`);
  });
}

/** Feeds `stream` cut at `cuts` (ascending offsets) and checks the frames and that nothing is left over. */
function feedAt(stream: Buffer, cuts: readonly number[], expected: readonly Buffer[]): void {
  const framer = new Framer(MAX);
  const sink = checker(expected);
  let from = 0;
  for (const cut of [...cuts, stream.length]) {
    framer.push(stream.subarray(from, cut), sink);
    from = cut;
  }
  if (sink.count !== expected.length) throw new Error(`cuts ${cuts.join(',')}: ${sink.count} of ${expected.length} frames`);
  if (framer.buffered !== 0) throw new Error(`cuts ${cuts.join(',')}: ${framer.buffered} bytes left buffered`);
}

/** Q, P, S, a ~40 KB D, X. The seed varies the DataRow bytes (see the every-offset test). */
function bigMessages(seed: number): Buffer[] {
  return [
    query('SELECT id, payload FROM events WHERE id = 42;'),
    parse('s1', 'SELECT $1::int + $2::int', [23, 23]),
    sync(),
    dataRow([pattern(40 * 1024, seed), Buffer.from('second column')]),
    terminate(),
  ];
}
const BIG = bigMessages(7);
const BIG_STREAM = Buffer.concat(BIG);

const SMALL = [query('SELECT 1'), parse('', 'SELECT $1', [25]), sync(), dataRow([Buffer.from('ab'), Buffer.alloc(0)]), terminate()];
const SMALL_STREAM = Buffer.concat(SMALL);

// Any split of a byte stream yields exactly the messages it carries, in order.
describe('Framer: split anywhere', () => {
  it('builds the fixture as the docs lay it out (Sync is length 4 with no body)', () => {
    expect([...sync()]).toEqual([0x53, 0, 0, 0, 4]);
    expect(BIG[3]!.length).toBeGreaterThan(40 * 1024);
    expect(BIG_STREAM.length).toBe(BIG.reduce((n, m) => n + m.length, 0));
  });

  it('delivers the whole stream in one chunk', () => {
    const sink = recorder();
    new Framer(MAX).push(BIG_STREAM, sink);
    expect(sink.frames.map((f) => String.fromCharCode(f.type))).toEqual(['Q', 'P', 'S', 'D', 'X']);
    expectFrames(sink.frames.map((f) => f.bytes), BIG);
  });

  // ~41 000 framers each assembling a 40 KB frame: about a second alone, more on a busy machine.
  // Successive runs alternate two payloads: Buffer.allocUnsafe recycles memory, and a byte the
  // framer forgot to copy could otherwise still hold the right value from the previous run.
  it('re-frames the stream split into two chunks at every offset', { timeout: 30_000 }, () => {
    const variants = [bigMessages(11), bigMessages(12)].map((msgs) => ({ msgs, stream: Buffer.concat(msgs) }));
    for (let k = 0; k <= BIG_STREAM.length; k++) {
      const { msgs, stream } = variants[k % 2]!;
      feedAt(stream, [k], msgs);
    }
  });

  it('re-frames a short stream split into three chunks at every pair of offsets', () => {
    const n = SMALL_STREAM.length;
    for (let i = 0; i <= n; i++) for (let j = i; j <= n; j++) feedAt(SMALL_STREAM, [i, j], SMALL);
  });

  it('re-frames the stream fed one byte at a time', () => {
    const msgs = bigMessages(21);
    const stream = Buffer.concat(msgs);
    feedAt(stream, Array.from({ length: stream.length }, (_, i) => i), msgs);
  });

  it('re-frames the stream fed in chunks of every size from 2 to 64 bytes', () => {
    for (let size = 2; size <= 64; size++) {
      const msgs = bigMessages(100 + size);
      const stream = Buffer.concat(msgs);
      const cuts: number[] = [];
      for (let c = size; c < stream.length; c += size) cuts.push(c);
      feedAt(stream, cuts, msgs);
    }
  });
});

const message = fc
  .record({ type: fc.integer({ min: 0x41, max: 0x5a }), body: fc.uint8Array({ maxLength: 3000 }) })
  .map(({ type, body }) => typed(String.fromCharCode(type), Buffer.from(body)));

// Property: random A–Z messages, concatenated and cut at random points, re-frame to themselves.
describe('Framer: random messages and cuts', () => {
  it('re-frames to the same messages', () => {
    fc.assert(
      fc.property(fc.array(message, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 20 }), (messages, rawCuts) => {
        const stream = Buffer.concat(messages);
        const cuts = [...new Set(rawCuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        const framer = new Framer(MAX);
        const sink = recorder();
        let from = 0;
        for (const cut of [...cuts, stream.length]) {
          framer.push(stream.subarray(from, cut), sink);
          from = cut;
        }
        expectFrames(sink.frames.map((f) => f.bytes), messages);
        expect(framer.buffered).toBe(0);
      }),
      { numRuns: 300 },
    );
  });

  // Bodies above 16 KB in small chunks make the partial buffer grow, which 3000-byte bodies never do.
  it('re-frames large messages fed in small random chunks', () => {
    const large = fc
      .record({ type: fc.integer({ min: 0x41, max: 0x5a }), size: fc.integer({ min: 0, max: 70_000 }), seed: fc.integer({ min: 1 }) })
      .map(({ type, size, seed }) => typed(String.fromCharCode(type), pattern(size, seed)));
    fc.assert(
      fc.property(fc.array(large, { minLength: 1, maxLength: 4 }), fc.array(fc.integer({ min: 1, max: 9000 }), { minLength: 1, maxLength: 8 }), (messages, sizes) => {
        const stream = Buffer.concat(messages);
        const cuts: number[] = [];
        for (let c = 0, i = 0; (c += sizes[i++ % sizes.length]!) < stream.length; ) cuts.push(c);
        feedAt(stream, cuts, messages);
      }),
      { numRuns: 60 },
    );
  });

  it('re-frames to the same messages when the sink pauses at random and chunks arrive while paused', () => {
    fc.assert(
      fc.property(
        fc.array(message, { maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 16 }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 16 }),
        (messages, rawCuts, pauses, resumeNow) => {
          const stream = Buffer.concat(messages);
          const cuts = [...new Set(rawCuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
          const framer = new Framer(MAX);
          const sink = recorder((i) => pauses[i % pauses.length]!);
          let from = 0;
          let step = 0;
          for (const cut of [...cuts, stream.length]) {
            framer.push(stream.subarray(from, cut), sink);
            from = cut;
            // Sometimes resume at once, sometimes let more chunks queue behind the paused ones.
            if (resumeNow[step++ % resumeNow.length]) while (framer.isPaused) framer.resume(sink);
          }
          while (framer.isPaused) framer.resume(sink);
          expectFrames(sink.frames.map((f) => f.bytes), messages);
          expect(framer.buffered).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });
});

// Frames wholly inside a chunk are views of it; only split frames are assembled.
describe('Framer: zero-copy views', () => {
  it('hands out frames contained in a chunk as views of that very chunk', () => {
    const chunk = Buffer.concat(SMALL);
    const sink = recorder();
    new Framer(MAX).push(chunk, sink);
    let offset = 0;
    for (const [i, f] of sink.frames.entries()) {
      expect(f.buf).toBe(chunk);
      expect([f.start, f.end]).toEqual([offset, offset + SMALL[i]!.length]);
      offset += SMALL[i]!.length;
    }
    expect(sink.frames).toHaveLength(SMALL.length);
  });

  it('assembles a frame split across chunks, then goes back to views of the next chunk', () => {
    const q = query('SELECT 1');
    const first = q.subarray(0, 7);
    const second = Buffer.concat([q.subarray(7), sync(), terminate()]);
    const sink = recorder();
    const framer = new Framer(MAX);
    framer.push(first, sink);
    expect(sink.frames).toHaveLength(0);
    framer.push(second, sink);
    expectFrames(sink.frames.map((f) => f.bytes), [q, sync(), terminate()]);
    const [assembled, s, x] = sink.frames;
    expect(assembled!.buf).not.toBe(first);
    expect(assembled!.buf).not.toBe(second);
    expect(assembled!.start).toBe(0);
    expect(assembled!.end).toBe(q.length);
    expect(s!.buf).toBe(second);
    expect(x!.buf).toBe(second);
    expect(s!.start).toBe(q.length - 7);
  });
});

// A sink returning false holds that frame and the rest, in order, until resume().
describe('Framer: pause and resume', () => {
  it('holds the refused frame and what follows, queues later chunks behind it, and resume delivers all in order', () => {
    const q = query('SELECT 1');
    const p = parse('s', 'SELECT 2', []);
    const later = Buffer.concat([query('SELECT 3'), terminate()]);
    const framer = new Framer(MAX);
    const sink = recorder((i) => i === 1); // refuse the second frame (Sync) once
    framer.push(Buffer.concat([q, sync(), p]), sink);
    expectFrames(sink.frames.map((f) => f.bytes), [q]);
    expect(framer.isPaused).toBe(true);
    expect(framer.buffered).toBe(sync().length + p.length);

    framer.push(later, sink); // arrives while paused: queued, not delivered
    expect(sink.frames).toHaveLength(1);
    expect(framer.buffered).toBe(sync().length + p.length + later.length);

    framer.resume(sink);
    expectFrames(sink.frames.map((f) => f.bytes), [q, sync(), p, query('SELECT 3'), terminate()]);
    expect(framer.isPaused).toBe(false);
    expect(framer.buffered).toBe(0);
  });

  it('pauses again during resume when the sink refuses again', () => {
    const msgs = [query('a'), query('b'), query('c'), query('d')];
    const framer = new Framer(MAX);
    const sink = recorder(() => true); // every frame refused once
    framer.push(Buffer.concat(msgs), sink);
    expect(sink.frames).toHaveLength(0);
    framer.resume(sink);
    expect(sink.frames).toHaveLength(1);
    framer.resume(sink);
    framer.resume(sink);
    framer.resume(sink);
    expectFrames(sink.frames.map((f) => f.bytes), msgs);
    expect(framer.isPaused).toBe(false);
  });

  it('holds a refused frame that completed a partial one, with the rest', () => {
    const d = dataRow([pattern(100)]);
    const framer = new Framer(MAX);
    const sink = recorder((i) => i === 0);
    framer.push(d.subarray(0, 50), sink);
    framer.push(Buffer.concat([d.subarray(50), sync()]), sink);
    expect(sink.frames).toHaveLength(0);
    expect(framer.isPaused).toBe(true);
    expect(framer.buffered).toBe(d.length + sync().length);
    framer.resume(sink);
    expectFrames(sink.frames.map((f) => f.bytes), [d, sync()]);
  });

  it('keeps a partial frame behind a refused one and completes it with the next push after resume', () => {
    const x = query('SELECT 42');
    const framer = new Framer(MAX);
    const sink = recorder((i) => i === 0);
    framer.push(Buffer.concat([sync(), x.subarray(0, 3)]), sink);
    expect(framer.isPaused).toBe(true);
    expect(framer.buffered).toBe(sync().length + 3);
    framer.resume(sink);
    expect(framer.isPaused).toBe(false);
    expect(framer.buffered).toBe(3);
    framer.push(x.subarray(3), sink);
    expectFrames(sink.frames.map((f) => f.bytes), [sync(), x]);
    expect(framer.buffered).toBe(0);
  });

  it('holds a refused frame that ends its chunk until resume', () => {
    const framer = new Framer(MAX);
    const sink = recorder((i) => i === 0);
    framer.push(sync(), sink);
    expect(framer.isPaused).toBe(true);
    expect(framer.buffered).toBe(sync().length);
    framer.resume(sink);
    framer.push(terminate(), sink);
    expectFrames(sink.frames.map((f) => f.bytes), [sync(), terminate()]);
  });
});

// `buffered` is exactly the bytes received but not yet delivered.
describe('Framer: buffered', () => {
  it('counts a partial header, a partial body, and drops to zero once the frame is out', () => {
    const d = dataRow([pattern(5000)]);
    const framer = new Framer(MAX);
    const sink = recorder();
    framer.push(d.subarray(0, 3), sink);
    expect(framer.buffered).toBe(3);
    framer.push(d.subarray(3, 13), sink);
    expect(framer.buffered).toBe(13);
    framer.push(d.subarray(13, 4000), sink);
    expect(framer.buffered).toBe(4000);
    framer.push(d.subarray(4000), sink);
    expect(framer.buffered).toBe(0);
    expectFrames(sink.frames.map((f) => f.bytes), [d]);
  });
});

const header = (type: string, length: number): Buffer => {
  const b = Buffer.alloc(5);
  b[0] = type.charCodeAt(0);
  b.writeInt32BE(length, 1);
  return b;
};

// Every length is distrusted: too small is a protocol error, too large is refused before any body is buffered.
describe('Framer: bounded lengths', () => {
  it.each([0, 1, 2, 3, -1, -0x80000000])('throws FrameLengthError for length %i', (length) => {
    const framer = new Framer(MAX);
    const err = captured(() => framer.push(header('Q', length), recorder()));
    expect(err).toBeInstanceOf(FrameLengthError);
    expect((err as FrameLengthError).length).toBe(length);
  });

  it('throws FrameLengthError when the bad header arrives split across chunks', () => {
    const framer = new Framer(MAX);
    const h = header('Q', 3);
    framer.push(h.subarray(0, 2), recorder());
    expect(() => framer.push(h.subarray(2), recorder())).toThrow(FrameLengthError);
  });

  it('accepts length 4 (an empty body) and exactly the maximum', () => {
    const framer = new Framer(1000);
    const sink = recorder();
    framer.push(sync(), sink);
    framer.push(header('D', 1000), sink);
    expect(framer.buffered).toBe(5);
    framer.push(Buffer.alloc(996), sink);
    expect(sink.frames.map((f) => f.end - f.start)).toEqual([5, 1001]);
  });

  it('throws FrameTooLargeError from a header-only chunk, before any body byte arrives', () => {
    const framer = new Framer(1000);
    const err = captured(() => framer.push(header('D', 1001), recorder()));
    expect(err).toBeInstanceOf(FrameTooLargeError);
    expect(err).toMatchObject({ type: 0x44, length: 1001, max: 1000 });
    expect((err as Error).message).toBe('message of type "D" is 1001 bytes, the limit is 1000');
  });

  it('throws FrameTooLargeError for a 2 GB claim without allocating it', () => {
    const framer = new Framer(MAX);
    expect(() => framer.push(header('D', 0x7fffffff), recorder())).toThrow(FrameTooLargeError);
  });

  it('throws FrameTooLargeError as soon as a header split 1 + 4 is complete', () => {
    const framer = new Framer(1000);
    const h = header('D', 5000);
    framer.push(h.subarray(0, 1), recorder());
    expect(framer.buffered).toBe(1);
    expect(() => framer.push(h.subarray(1), recorder())).toThrow(FrameTooLargeError);
  });

  it('delivers the good frames before the bad header, then throws', () => {
    const framer = new Framer(1000);
    const sink = recorder();
    expect(() => framer.push(Buffer.concat([query('ok'), header('D', 2000), Buffer.alloc(10)]), sink)).toThrow(FrameTooLargeError);
    expectFrames(sink.frames.map((f) => f.bytes), [query('ok')]);
  });

});

function captured(fn: () => void): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

// Pass-through types are streamed in pieces when split, never assembled; everything else is unchanged.
describe('Framer: pass-through streaming', () => {
  const D = 0x44;
  /** Collects whole frames and re-joins streamed pieces; records how many pieces came. */
  function joiner(): FrameSink & { frames: Buffer[]; pieces: number; partsOfOther: number } {
    let current: Buffer[] | null = null;
    const sink = {
      frames: [] as Buffer[],
      pieces: 0,
      partsOfOther: 0,
      onFrame(_type: number, buf: Buffer, start: number, end: number): boolean {
        expect(current).toBeNull(); // a streamed frame is never interrupted
        sink.frames.push(Buffer.from(buf.subarray(start, end)));
        return true;
      },
      onFramePart(type: number, buf: Buffer, start: number, end: number, last: boolean): void {
        if (type !== D) sink.partsOfOther++;
        sink.pieces++;
        current ??= [];
        current.push(Buffer.from(buf.subarray(start, end)));
        if (last) {
          sink.frames.push(Buffer.concat(current));
          current = null;
        }
      },
    };
    return sink;
  }

  it('streams a split DataRow at every split offset and re-frames everything else as before', () => {
    const messages = [query('SELECT 1'), dataRow([pattern(5000, 3)]), sync(), dataRow([Buffer.alloc(0)]), typed('Z', Buffer.from('I'))];
    const stream = Buffer.concat(messages);
    for (let cut = 0; cut <= stream.length; cut++) {
      const sink = joiner();
      const framer = new Framer(MAX, (t) => t === D);
      framer.push(stream.subarray(0, cut), sink);
      framer.push(stream.subarray(cut), sink);
      expectFrames(sink.frames, messages);
      expect(sink.partsOfOther).toBe(0);
      expect(framer.buffered).toBe(0);
    }
  });

  it('never buffers more than a header of a streamed frame, whatever the chunking', () => {
    const row = dataRow([pattern(50_000, 5)]);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 20_000 }), { minLength: 1, maxLength: 30 }).filter((sizes) => sizes.some((n) => n >= 64)), (sizes) => {
        const stream = Buffer.concat([row, sync()]);
        const sink = joiner();
        const framer = new Framer(MAX, (t) => t === D);
        let from = 0;
        for (let i = 0; from < stream.length; i++) {
          const to = Math.min(stream.length, from + sizes[i % sizes.length]!);
          framer.push(stream.subarray(from, to), sink);
          expect(framer.buffered).toBeLessThanOrEqual(5);
          from = to;
        }
        expectFrames(sink.frames, [row, sync()]);
      }),
      { numRuns: 40 },
    );
  }, 30_000);

  it('streams a pass-through frame above the bound (never assembled), and still bounds the assembled types', () => {
    const framer = new Framer(1000, (t) => t === D, 1 << 20);
    const body = Buffer.alloc(4096 - 4, 7);
    const big = Buffer.concat([Buffer.from('D'), Buffer.from([0, 0, 0x10, 0]), body]);
    const pieces: Buffer[] = [];
    const sink = { onFrame: () => undefined, onFramePart: (_t: number, b: Buffer, s: number, e: number) => void pieces.push(Buffer.from(b.subarray(s, e))) };
    framer.push(big.subarray(0, 100), sink);
    framer.push(big.subarray(100), sink);
    expect(Buffer.concat(pieces).equals(big)).toBe(true);
    expect(framer.buffered).toBe(0);
    expect(() => framer.push(Buffer.concat([Buffer.from('Q'), Buffer.from([0, 0, 0x10, 0])]), joiner())).toThrow(FrameTooLargeError);
  });
});
