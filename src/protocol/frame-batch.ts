// The one frame-batching writer, for both directions: frames that lie next to
// each other in the chunk just received leave in one write (a slice of that
// chunk, no copy), and bytes of our own written between them (a rewritten
// Bind, a hidden Parse) go out with them in one writev, because the target is
// corked until the chunk is done. One write per chunk means one wakeup of the
// peer, which is what the relay's CPU goes to.

/** Where a batch goes: a socket, or a client's relay. */
export interface BatchTarget {
  write(buf: Buffer): unknown;
  /** Holds writes until uncork() so that several pieces leave in one writev; optional. */
  cork?(): void;
  uncork?(): void;
}

export class FrameBatch {
  private chunk: Buffer | null = null;
  private start = 0;
  private end = 0;
  /** The target of the pending run (runs are flushed before the target changes). */
  private target: BatchTarget | null = null;
  /** A target corked because this chunk wrote more than one piece to it. */
  private corked: BatchTarget | null = null;

  /** A new chunk arrived: frames in it may be batched. */
  begin(chunk: Buffer): void {
    this.chunk = chunk;
    this.start = this.end = 0;
  }

  /** Adds frame bytes `buf[start, end)` bound for `target`. */
  add(target: BatchTarget, buf: Buffer, start: number, end: number): void {
    if (buf === this.chunk && target === this.target && start === this.end && this.end > this.start) {
      this.end = end; // contiguous with the run: one write later
      return;
    }
    this.flush();
    if (buf === this.chunk) {
      this.target = target;
      this.start = start;
      this.end = end;
    } else {
      target.write(buf.subarray(start, end)); // assembled across chunks: its own buffer
    }
  }

  /** Writes bytes of our own after the run before them, in order; the target stays corked until finish(). */
  addOwn(target: BatchTarget, buf: Buffer): void {
    if (this.corked !== target) {
      this.uncork();
      if (target.cork) {
        target.cork();
        this.corked = target;
      }
    }
    this.flush();
    target.write(buf);
  }

  /** Writes the pending run now (before the target changes, or before anything else must go first). */
  flush(): void {
    const chunk = this.chunk;
    const target = this.target;
    if (chunk && target && this.end > this.start) {
      target.write(this.start === 0 && this.end === chunk.length ? chunk : chunk.subarray(this.start, this.end));
    }
    this.start = this.end = 0;
    this.target = null;
  }

  /** The chunk is done: flush, and let a corked target send everything in one writev. */
  finish(): void {
    this.flush();
    this.chunk = null;
    this.uncork();
  }

  private uncork(): void {
    const corked = this.corked;
    if (corked === null) return;
    this.corked = null;
    corked.uncork!();
  }
}
