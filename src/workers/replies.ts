// Request/reply over the cluster IPC channel: each request gets an id, the
// reply with that id settles it, and a timer settles it with null instead, so a
// dead or stuck process costs at most the timeout, never a hang.

export class PendingReplies<T> {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (value: T | null) => void; timer: NodeJS.Timeout }>();

  constructor(private readonly timeoutMs: number) {}

  /**
   * Sends with a fresh id; resolves with the reply, or null on timeout or when
   * `send` throws. Its return value is ignored: Node's IPC send() returns false
   * when messages back up, and the message is still delivered (under load,
   * taking false for a failure failed reloads that every worker had answered).
   */
  request(send: (id: number) => unknown): Promise<T | null> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.settle(id, null), this.timeoutMs);
      timer.unref();
      this.pending.set(id, { resolve, timer });
      try {
        send(id);
      } catch {
        this.settle(id, null); // the channel is closed: the process is gone
      }
    });
  }

  /** A reply arrived; unknown or late ids are ignored (false). */
  settle(id: number, value: T | null): boolean {
    const p = this.pending.get(id);
    if (!p) return false;
    this.pending.delete(id);
    clearTimeout(p.timer);
    p.resolve(value);
    return true;
  }
}
