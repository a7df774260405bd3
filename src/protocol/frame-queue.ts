// Promise-style reading of whole frames from a socket, for the login phases
// (client authentication, server login) where a few round trips happen once.
// After login the owner detaches it and switches to the event-driven relay.
import type { Duplex } from 'node:stream';
import { Framer, type FrameSink } from './framer.js';

export interface Frame {
  type: number;
  /** Body only (after type byte and length), copied: safe to keep. */
  body: Buffer;
  /** Whole frame bytes (type, length, body). */
  raw: Buffer;
}

export class ConnectionClosedError extends Error {
  constructor(message = 'connection closed') {
    super(message);
  }
}

export class FrameTimeoutError extends Error {}

export class FrameQueue implements FrameSink {
  private readonly framer: Framer;
  private readonly frames: Frame[] = [];
  private waiter: { resolve: (f: Frame) => void; reject: (e: Error) => void; timer: NodeJS.Timeout | null } | null = null;
  private failure: Error | null = null;
  private readonly onData = (chunk: Buffer): void => this.push(chunk);
  private readonly onEnd = (): void => this.fail(new ConnectionClosedError());
  private readonly onError = (err: Error): void => this.fail(err);

  constructor(
    private readonly socket: Duplex,
    maxLength: number,
    initial?: Buffer,
  ) {
    this.framer = new Framer(maxLength);
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
    if (initial && initial.length > 0) this.push(initial);
    socket.resume(); // the handshake leaves it paused so that no byte is lost in between
  }

  onFrame(type: number, buf: Buffer, start: number, end: number): void {
    const raw = Buffer.from(buf.subarray(start, end)); // a copy: the chunk is not ours to keep
    const frame = { type, raw, body: raw.subarray(5) };
    const w = this.waiter;
    if (w) {
      this.waiter = null;
      if (w.timer) clearTimeout(w.timer);
      w.resolve(frame);
    } else {
      this.frames.push(frame);
    }
  }

  /** The next frame; rejects on close, error, bad framing or timeout. */
  next(timeoutMs = 0): Promise<Frame> {
    const queued = this.frames.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = timeoutMs > 0 ? setTimeout(() => this.timeout(), timeoutMs) : null;
      this.waiter = { resolve, reject, timer };
    });
  }

  /**
   * Stops listening. Returns the frames received but not yet read (raw bytes,
   * in order) and the framer, which may hold the start of the next frame: the
   * relay keeps using it so no byte is lost.
   */
  detach(): { frames: Buffer[]; framer: Framer } {
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onError);
    const frames = this.frames.map((f) => f.raw);
    this.frames.length = 0;
    return { frames, framer: this.framer };
  }

  private push(chunk: Buffer): void {
    if (this.failure) return;
    try {
      this.framer.push(chunk, this);
    } catch (err) {
      this.fail(err as Error);
    }
  }

  private timeout(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.reject(new FrameTimeoutError('timed out waiting for a message'));
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    const w = this.waiter;
    this.waiter = null;
    if (w) {
      if (w.timer) clearTimeout(w.timer);
      w.reject(err);
    }
  }
}
