// The one frame-batching writer (src/protocol/frame-batch.ts): frames that lie
// next to each other in a chunk leave as one zero-copy slice of it, our own
// bytes between runs keep their place and share one cork, and anything that
// cannot be a slice of the chunk is written on its own.
import { describe, expect, it } from 'vitest';
import { FrameBatch, type BatchTarget } from '../../../src/protocol/frame-batch.js';

type Event = { write: Buffer } | 'cork' | 'uncork';

/** A target that records its writes (the buffers themselves, not copies) and cork calls. */
function target(corkable = true): BatchTarget & { events: Event[]; writes: Buffer[] } {
  const events: Event[] = [];
  const t = {
    events,
    get writes(): Buffer[] {
      return events.flatMap((e) => (typeof e === 'object' ? [e.write] : []));
    },
    write(buf: Buffer): boolean {
      events.push({ write: buf });
      return true;
    },
  };
  return corkable ? Object.assign(t, { cork: () => void events.push('cork'), uncork: () => void events.push('uncork') }) : t;
}

/** A chunk of `n` frames of `size` bytes each, every byte naming its frame. */
function chunkOf(n: number, size: number): Buffer {
  const b = Buffer.alloc(n * size);
  for (let i = 0; i < n; i++) b.fill(0x41 + i, i * size, (i + 1) * size);
  return b;
}

/** True when `w` is a view of `chunk`'s memory starting `offset` bytes into it (no copy was made). */
function isSliceOf(w: Buffer, chunk: Buffer, offset: number): boolean {
  return w.buffer === chunk.buffer && w.byteOffset === chunk.byteOffset + offset;
}

describe('FrameBatch', () => {
  it('writes contiguous frames of one chunk as one write: the chunk itself, no copy', () => {
    const chunk = chunkOf(4, 10);
    const t = target();
    const batch = new FrameBatch();
    batch.begin(chunk);
    for (let i = 0; i < 4; i++) batch.add(t, chunk, i * 10, (i + 1) * 10);
    expect(t.writes).toHaveLength(0); // nothing leaves before the chunk is done
    batch.finish();
    expect(t.events).toHaveLength(1);
    expect(t.writes[0]).toBe(chunk);
  });

  it('writes a contiguous run inside a chunk as one slice sharing its memory', () => {
    const chunk = chunkOf(5, 8);
    const t = target();
    const batch = new FrameBatch();
    batch.begin(chunk);
    batch.add(t, chunk, 8, 16);
    batch.add(t, chunk, 16, 24);
    batch.add(t, chunk, 24, 32);
    batch.finish();
    expect(t.writes).toHaveLength(1);
    const w = t.writes[0]!;
    expect(w.length).toBe(24);
    expect(isSliceOf(w, chunk, 8)).toBe(true);
    expect(w.equals(chunk.subarray(8, 32))).toBe(true);
  });

  it('starts a new write at a gap (a frame held back or swallowed between two runs)', () => {
    const chunk = chunkOf(4, 10);
    const t = target();
    const batch = new FrameBatch();
    batch.begin(chunk);
    batch.add(t, chunk, 0, 10);
    batch.add(t, chunk, 10, 20);
    batch.add(t, chunk, 30, 40); // frame 2 (20..30) left out
    batch.finish();
    expect(t.writes).toHaveLength(2);
    expect(isSliceOf(t.writes[0]!, chunk, 0) && t.writes[0]!.length === 20).toBe(true);
    expect(isSliceOf(t.writes[1]!, chunk, 30) && t.writes[1]!.length === 10).toBe(true);
    expect(t.events).not.toContain('cork'); // two slices alone need no cork
  });

  it('keeps our own bytes between runs in order and corks the target once until finish()', () => {
    const chunk = chunkOf(4, 10);
    const t = target();
    const own1 = Buffer.from('own-one');
    const own2 = Buffer.from('own-two');
    const batch = new FrameBatch();
    batch.begin(chunk);
    batch.add(t, chunk, 0, 10);
    batch.add(t, chunk, 10, 20);
    batch.addOwn(t, own1); // a hidden Parse before frame 2
    batch.add(t, chunk, 20, 30);
    batch.addOwn(t, own2);
    batch.add(t, chunk, 30, 40);
    const beforeFinish = t.events.length;
    batch.finish();
    const order = t.events.map((e) => (typeof e === 'object' ? e.write.toString('latin1') : e));
    expect(order).toEqual(['cork', 'A'.repeat(10) + 'B'.repeat(10), 'own-one', 'C'.repeat(10), 'own-two', 'D'.repeat(10), 'uncork']);
    expect(t.events.filter((e) => e === 'cork')).toHaveLength(1);
    expect(t.events.filter((e) => e === 'uncork')).toHaveLength(1);
    expect(t.events.indexOf('uncork')).toBeGreaterThanOrEqual(beforeFinish); // uncorked by finish(), not before
    expect(t.writes[1]).toBe(own1); // our own bytes are written as given
    expect(isSliceOf(t.writes[2]!, chunk, 20)).toBe(true);
  });

  it('writes our own bytes to a target without cork() in order', () => {
    const chunk = chunkOf(2, 4);
    const t = target(false);
    const batch = new FrameBatch();
    batch.begin(chunk);
    batch.add(t, chunk, 0, 4);
    batch.addOwn(t, Buffer.from('xy'));
    batch.add(t, chunk, 4, 8);
    batch.finish();
    expect(t.writes.map((w) => w.toString('latin1'))).toEqual(['AAAA', 'xy', 'BBBB']);
  });

  it('flushes the pending run when the target changes', () => {
    const chunk = chunkOf(4, 10);
    const a = target();
    const b = target();
    const batch = new FrameBatch();
    batch.begin(chunk);
    batch.add(a, chunk, 0, 10);
    batch.add(a, chunk, 10, 20);
    expect(a.writes).toHaveLength(0);
    batch.add(b, chunk, 20, 30); // contiguous bytes, but for someone else
    expect(a.writes).toHaveLength(1); // a's run left before b's began
    expect(isSliceOf(a.writes[0]!, chunk, 0) && a.writes[0]!.length === 20).toBe(true);
    batch.add(b, chunk, 30, 40);
    batch.finish();
    expect(b.writes).toHaveLength(1);
    expect(isSliceOf(b.writes[0]!, chunk, 20) && b.writes[0]!.length === 20).toBe(true);
  });

  it('moves the cork when our own bytes go to another target: each corked once, uncorked before the next', () => {
    const chunk = chunkOf(2, 4);
    const a = target();
    const b = target();
    const log: string[] = [];
    for (const [name, t] of [['a', a], ['b', b]] as const) {
      const cork = t.cork!;
      const uncork = t.uncork!;
      t.cork = () => (log.push(`${name}.cork`), cork());
      t.uncork = () => (log.push(`${name}.uncork`), uncork());
    }
    const batch = new FrameBatch();
    batch.begin(chunk);
    batch.addOwn(a, Buffer.from('1'));
    batch.addOwn(a, Buffer.from('2'));
    batch.addOwn(b, Buffer.from('3'));
    batch.finish();
    expect(log).toEqual(['a.cork', 'a.uncork', 'b.cork', 'b.uncork']);
    expect(a.writes.map(String)).toEqual(['1', '2']);
    expect(b.writes.map(String)).toEqual(['3']);
  });

  it('writes a frame assembled in another buffer on its own, after the run before it', () => {
    const chunk = chunkOf(3, 6);
    const assembled = Buffer.from('assembled-across-chunks');
    const t = target();
    const batch = new FrameBatch();
    batch.begin(chunk);
    batch.add(t, chunk, 0, 6);
    batch.add(t, assembled, 0, assembled.length);
    batch.add(t, chunk, 6, 12);
    batch.add(t, chunk, 12, 18);
    batch.finish();
    expect(t.writes).toHaveLength(3);
    expect(isSliceOf(t.writes[0]!, chunk, 0) && t.writes[0]!.length === 6).toBe(true);
    expect(t.writes[1]!.buffer).toBe(assembled.buffer);
    expect(t.writes[1]!.toString()).toBe('assembled-across-chunks');
    expect(isSliceOf(t.writes[2]!, chunk, 6) && t.writes[2]!.length === 12).toBe(true);
  });

  it('writes part of an assembled buffer as a view of it', () => {
    const chunk = chunkOf(1, 4);
    const other = Buffer.from('0123456789');
    const t = target();
    const batch = new FrameBatch();
    batch.begin(chunk);
    batch.add(t, other, 2, 7);
    batch.finish();
    expect(t.writes).toHaveLength(1);
    expect(isSliceOf(t.writes[0]!, other, 2)).toBe(true);
    expect(t.writes[0]!.toString()).toBe('23456');
  });

  it('never joins runs of two chunks: each chunk leaves in its own write', () => {
    const first = chunkOf(2, 4);
    const second = chunkOf(2, 4);
    const t = target();
    const batch = new FrameBatch();
    batch.begin(first);
    batch.add(t, first, 0, 8);
    batch.finish();
    batch.begin(second);
    batch.add(t, second, 0, 4);
    batch.add(t, second, 4, 8);
    batch.finish();
    expect(t.writes).toHaveLength(2);
    expect(t.writes[0]).toBe(first);
    expect(t.writes[1]).toBe(second);
  });

  it('writes nothing for an empty run and nothing twice on flush() then finish()', () => {
    const chunk = chunkOf(2, 4);
    const t = target();
    const batch = new FrameBatch();
    batch.begin(chunk);
    batch.flush();
    batch.add(t, chunk, 0, 4);
    batch.flush();
    batch.flush();
    batch.finish();
    expect(t.writes).toHaveLength(1);
    expect(isSliceOf(t.writes[0]!, chunk, 0) && t.writes[0]!.length === 4).toBe(true);
  });
});
