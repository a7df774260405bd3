// The one framer: turns a byte stream of typed protocol messages (Byte1 type,
// Int32 length that counts itself but not the type, body) into frames.
//
// Frames contained in one chunk are handed out as views of that chunk, with no
// copy. A frame split across chunks is either assembled, into a buffer that
// grows as its bytes arrive (never to a length we have not checked against the
// bound), or, for pass-through types such as DataRow, streamed on in pieces as
// they arrive and never assembled.
// https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS

export interface FrameSink {
  /**
   * One whole frame at `buf[start, end)`, type byte and length included.
   * The bytes are only valid during the call: copy what you keep.
   * Return false to hold this frame and all that follows until `resume()`.
   */
  onFrame(type: number, buf: Buffer, start: number, end: number): boolean | void;
  /**
   * A piece of a pass-through frame that did not fit in one chunk (see the
   * Framer's `passThrough`), in order: the first piece starts with the type
   * byte, `last` ends the frame. Valid only during the call. Cannot hold back.
   */
  onFramePart?(type: number, buf: Buffer, start: number, end: number, last: boolean): void;
  /**
   * A pass-through frame that spans chunks is about to stream (its header is
   * known, its body not yet here). Return false to hold it and all that follows
   * until `resume()`, unread, before any piece is handed out.
   */
  onFrameStart?(type: number, length: number): boolean;
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
  // A header split across chunks, made on first need: most connections never split one.
  // Its own 5 bytes, not a slice of Node's shared 8 kB allocation pool: a long-lived
  // slice would pin the whole slab, about 1.6 kB per idle connection.
  private headerBytes: Buffer | null = null;
  private paused: Buffer | null = null;
  // A pass-through frame being streamed: its type and how many bytes are still to come.
  private streamType = 0;
  private streamLeft = 0;

  /**
   * @param passThrough frame types whose bodies the sink never needs whole
   *   (DataRow, CopyData…): when one spans chunks it goes to `onFramePart` in
   *   pieces. The sink must then implement onFramePart.
   */
  constructor(
    private readonly maxLength: number,
    private readonly passThrough: ((type: number) => boolean) | null = null,
    /** The bound on a streamed frame, which costs no memory (a trusted server's may be larger). */
    private readonly maxStreamed = maxLength,
  ) {}

  /** Bytes buffered but not yet delivered. */
  get buffered(): number {
    return this.partialFill + (this.paused?.length ?? 0);
  }

  get isPaused(): boolean {
    return this.paused !== null;
  }

  /**
   * Takes the bytes received but not delivered (a partial frame, or frames held
   * back), in order, and leaves the framer empty. Not while a frame streams.
   */
  takeBuffered(): Buffer {
    if (this.streamLeft > 0) throw new Error('takeBuffered() in the middle of a streamed frame');
    const parts: Buffer[] = [];
    if (this.partialFill > 0) parts.push(Buffer.from(this.partial!.subarray(0, this.partialFill)));
    if (this.paused !== null) parts.push(this.paused);
    this.resetPartial();
    this.paused = null;
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
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
    if (this.streamLeft > 0) {
      pos = this.stream(chunk, 0, sink);
      if (this.streamLeft > 0) return;
    } else if (this.partialFill > 0) {
      pos = this.fillPartial(chunk);
      if (this.partialSize === 0) return; // header still incomplete
      if (this.partialFill === HEADER && this.partialSize > HEADER && this.passThrough?.(this.header[0]!)) {
        // The header just completed and this type streams: hand over the header, then the body as it comes.
        const type = this.header[0]!;
        if (sink.onFrameStart?.(type, this.partialSize) === false) {
          this.paused = Buffer.concat([this.header, chunk.subarray(pos)]);
          this.resetPartial();
          return;
        }
        this.streamType = type;
        this.streamLeft = this.partialSize - HEADER;
        this.resetPartial();
        sink.onFramePart!(type, Buffer.from(this.header), 0, HEADER, false);
        pos = this.stream(chunk, pos, sink);
        if (this.streamLeft > 0) return;
      } else {
        if (this.partialFill < this.partialSize) return;
        const frame = this.partial!;
        const size = this.partialSize;
        this.resetPartial();
        if (sink.onFrame(frame[0]!, frame, 0, size) === false) {
          this.paused = Buffer.concat([frame.subarray(0, size), chunk.subarray(pos)]);
          return;
        }
      }
    }
    this.scan(chunk, pos, sink);
  }

  /** Takes the bytes held back by a sink that returned false (from the held frame on), to push() again; null if none. */
  takeHeld(): Buffer | null {
    const held = this.paused;
    this.paused = null;
    return held;
  }

  /** Delivers frames held back by a sink that returned false. */
  resume(sink: FrameSink): void {
    const rest = this.paused;
    if (rest === null) return;
    this.paused = null;
    this.push(rest, sink);
  }

  private scan(chunk: Buffer, pos: number, sink: FrameSink): void {
    const n = chunk.length;
    while (n - pos >= HEADER) {
      const type = chunk[pos]!;
      const length = chunk.readInt32BE(pos + 1);
      this.check(type, length);
      const end = pos + 1 + length;
      if (end > n) {
        if (this.passThrough?.(type)) {
          if (sink.onFrameStart?.(type, 1 + length) === false) {
            this.paused = chunk.subarray(pos);
            return;
          }
          this.streamType = type;
          this.streamLeft = end - n;
          sink.onFramePart!(type, chunk, pos, n, false);
          return;
        }
        break;
      }
      if (sink.onFrame(type, chunk, pos, end) === false) {
        this.paused = chunk.subarray(pos);
        return;
      }
      pos = end;
    }
    if (pos < n) this.startPartial(chunk, pos);
  }

  /** Passes on the next piece of a streamed frame; returns where the chunk goes on. */
  private stream(chunk: Buffer, pos: number, sink: FrameSink): number {
    const take = Math.min(this.streamLeft, chunk.length - pos);
    if (take === 0) return pos;
    this.streamLeft -= take;
    sink.onFramePart!(this.streamType, chunk, pos, pos + take, this.streamLeft === 0);
    return pos + take;
  }

  private get header(): Buffer {
    return (this.headerBytes ??= Buffer.alloc(HEADER));
  }

  private check(type: number, length: number): void {
    if (length < 4) throw new FrameLengthError(length);
    const max = this.passThrough?.(type) ? Math.max(this.maxLength, this.maxStreamed) : this.maxLength;
    if (length > max) throw new FrameTooLargeError(type, length, max);
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
      if (this.partialSize > HEADER && this.passThrough?.(this.header[0]!)) return pos; // push() streams it
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
