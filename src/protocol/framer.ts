// The one framer: turns a byte stream of typed protocol messages (Byte1 type,
// Int32 length that counts itself but not the type, body) into frames.
//
// Frames contained in one chunk are handed out as views of that chunk, with no
// copy; only a frame split across chunks is assembled, into a buffer that grows
// as its bytes arrive (never to a length we have not checked against the bound).
// https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS

export interface FrameSink {
  /**
   * One whole frame at `buf[start, end)`, type byte and length included.
   * The bytes are only valid during the call: copy what you keep.
   * Return false to hold this frame and all that follows until `resume()`.
   */
  onFrame(type: number, buf: Buffer, start: number, end: number): boolean | void;
}

export class FrameTooLargeError extends Error {
  constructor(
    readonly type: number,
    readonly length: number,
    readonly max: number,
  ) {
    super(`message of type ${JSON.stringify(String.fromCharCode(type))} is ${length} bytes, the limit is ${max}`);
  }
}

export class FrameLengthError extends Error {
  constructor(readonly length: number) {
    super(`invalid message length ${length}`);
  }
}

const HEADER = 5;

export class Framer {
  // A partial frame carried over between chunks: `partial[0, partialFill)`.
  private partial: Buffer | null = null;
  private partialFill = 0;
  private partialSize = 0; // full frame size once the header is known, else 0
  private header = Buffer.allocUnsafe(HEADER);
  private paused: Buffer | null = null;

  constructor(private maxLength: number) {}

  /** Bytes buffered but not yet delivered as a frame. */
  get buffered(): number {
    return this.partialFill + (this.paused?.length ?? 0);
  }

  setMaxLength(max: number): void {
    this.maxLength = max;
  }

  /**
   * Feeds one chunk. Delivers every complete frame to `sink` in order.
   * Throws FrameLengthError / FrameTooLargeError on a bad length; the stream is
   * unusable afterwards.
   */
  push(chunk: Buffer, sink: FrameSink): void {
    if (this.paused !== null) {
      // Still holding frames back: queue behind them, order is everything.
      this.paused = Buffer.concat([this.paused, chunk]);
      return;
    }
    let pos = 0;
    if (this.partialFill > 0) {
      pos = this.fillPartial(chunk);
      if (this.partialSize === 0 || this.partialFill < this.partialSize) return;
      const frame = this.partial!;
      const size = this.partialSize;
      this.resetPartial();
      if (sink.onFrame(frame[0]!, frame, 0, size) === false) {
        this.paused = Buffer.concat([frame.subarray(0, size), chunk.subarray(pos)]);
        return;
      }
    }
    this.scan(chunk, pos, sink);
  }

  get isPaused(): boolean {
    return this.paused !== null;
  }

  /** Delivers frames held back by a sink that returned false. */
  resume(sink: FrameSink): void {
    const rest = this.paused;
    if (rest === null) return;
    this.paused = null;
    this.scan(rest, 0, sink);
  }

  private scan(chunk: Buffer, pos: number, sink: FrameSink): void {
    const n = chunk.length;
    while (n - pos >= HEADER) {
      const length = chunk.readInt32BE(pos + 1);
      this.check(chunk[pos]!, length);
      const end = pos + 1 + length;
      if (end > n) break;
      if (sink.onFrame(chunk[pos]!, chunk, pos, end) === false) {
        this.paused = chunk.subarray(pos);
        return;
      }
      pos = end;
    }
    if (pos < n) this.startPartial(chunk, pos);
  }

  private check(type: number, length: number): void {
    if (length < 4) throw new FrameLengthError(length);
    if (length > this.maxLength) throw new FrameTooLargeError(type, length, this.maxLength);
  }

  private startPartial(chunk: Buffer, pos: number): void {
    const have = chunk.length - pos;
    if (have < HEADER) {
      chunk.copy(this.header, 0, pos);
      this.partial = this.header;
      this.partialFill = have;
      this.partialSize = 0;
      return;
    }
    const length = chunk.readInt32BE(pos + 1);
    const size = 1 + length;
    // Start small and grow: the length is bounded but not yet backed by bytes.
    this.partial = Buffer.allocUnsafe(Math.min(size, Math.max(have * 2, 16 * 1024)));
    chunk.copy(this.partial, 0, pos);
    this.partialFill = have;
    this.partialSize = size;
  }

  /** Appends from `chunk` to the partial frame; returns how many bytes it consumed. */
  private fillPartial(chunk: Buffer): number {
    let pos = 0;
    if (this.partialSize === 0) {
      const need = HEADER - this.partialFill;
      const take = Math.min(need, chunk.length);
      chunk.copy(this.header, this.partialFill, 0, take);
      this.partialFill += take;
      pos = take;
      if (this.partialFill < HEADER) return pos;
      const length = this.header.readInt32BE(1);
      this.check(this.header[0]!, length);
      this.partialSize = 1 + length;
      this.partial = Buffer.allocUnsafe(Math.min(this.partialSize, Math.max(HEADER + chunk.length, 16 * 1024)));
      this.header.copy(this.partial, 0, 0, HEADER);
    }
    const want = this.partialSize - this.partialFill;
    const take = Math.min(want, chunk.length - pos);
    this.ensureCapacity(this.partialFill + take);
    chunk.copy(this.partial!, this.partialFill, pos, pos + take);
    this.partialFill += take;
    return pos + take;
  }

  private ensureCapacity(size: number): void {
    const buf = this.partial!;
    if (buf.length >= size) return;
    const grown = Buffer.allocUnsafe(Math.min(this.partialSize, Math.max(size, buf.length * 2)));
    buf.copy(grown, 0, 0, this.partialFill);
    this.partial = grown;
  }

  private resetPartial(): void {
    this.partial = null;
    this.partialFill = 0;
    this.partialSize = 0;
  }
}
