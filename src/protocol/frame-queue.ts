// Promise-style reading of whole frames from a socket, for the login phases
// (client authentication, server login) where a few round trips happen once.
// After login the owner detaches it and switches to the event-driven relay.
// Before login every byte is a stranger's: frames not yet asked for are kept up
// to one message's worth, then the socket is paused (backpressure), so what a
// client sends ahead never grows memory.
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
  /** Bytes of the frames received but not yet read. */
  private queuedBytes = 0;
  private pausedByUs = false;
  private readonly onData = (chunk: Buffer): void => this.push(chunk);
  private readonly onEnd = (): void => this.fail(new ConnectionClosedError());
  private readonly onError = (err: Error): void => this.fail(err);

  constructor(
    private readonly socket: Duplex,
    private readonly maxLength: number,
    initial?: Buffer,
  ) {
    this.framer = new Framer(maxLength);
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
    if (initial && initial.length > 0) this.push(initial);
    // The handshake leaves it paused so that no byte is lost in between; stay paused if what came with it is already a full budget.
    if (!this.pausedByUs) socket.resume();
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
      this.queuedBytes += raw.length;
      if (this.queuedBytes > this.maxLength && !this.pausedByUs) {
        this.pausedByUs = true;
        this.socket.pause();
      }
    }
  }

  /** The next frame; rejects on close, error, bad framing or timeout. */
  next(timeoutMs = 0): Promise<Frame> {
    const queued = this.frames.shift();
    if (queued) {
      this.queuedBytes -= queued.raw.length;
      if (this.pausedByUs && this.queuedBytes <= this.maxLength) {
        this.pausedByUs = false;
        this.socket.resume();
      }
      return Promise.resolve(queued);
    }
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = timeoutMs > 0 ? setTimeout(() => this.timeout(), timeoutMs) : null;
      this.waiter = { resolve, reject, timer };
    });
  }

  /**
   * Stops listening. Returns every byte received but not yet read, in the order
   * it arrived: whole frames not yet read, then the start of the next one. The
   * relay feeds them to its own framer first, so no byte is lost or reordered.
   */
  detach(): Buffer {
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onError);
    const parts = this.frames.map((f) => f.raw);
    this.frames.length = 0;
    this.queuedBytes = 0;
    parts.push(this.framer.takeBuffered());
    return Buffer.concat(parts);
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
