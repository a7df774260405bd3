// A map with a size cap and an expiry per entry, for state keyed by what
// strangers send (user names, database names, client addresses): however many
// keys arrive, it holds at most `capacity`. A Map iterates in insertion order,
// so re-inserting on every hit keeps the least recently used key first, and
// eviction takes it. Expired entries go when read, and in a sweep that a write
// runs at most once per `sweepEveryMs` (no timer to stop).

export interface ExpiringLruOptions {
  /** Clock in milliseconds; tests pass a fake one. */
  now?: () => number;
  /** Least time between two sweeps of expired entries. */
  sweepEveryMs?: number;
}

interface Entry<V> {
  value: V;
  expires: number;
}

export class ExpiringLru<V> {
  private readonly entries = new Map<string, Entry<V>>();
  private readonly now: () => number;
  private readonly sweepEveryMs: number;
  private nextSweep: number;

  constructor(
    readonly capacity: number,
    opts: ExpiringLruOptions = {},
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`ExpiringLru capacity must be an integer >= 1, got ${capacity}`);
    this.now = opts.now ?? Date.now;
    this.sweepEveryMs = opts.sweepEveryMs ?? 1000;
    this.nextSweep = this.now() + this.sweepEveryMs;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The live value of `key` (which becomes the most recently used), or undefined. */
  get(key: string): V | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.expires <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    this.entries.delete(key);
    this.entries.set(key, e);
    return e.value;
  }

  /** Stores `value` for `ttlMs`; evicts the least recently used entries beyond the cap. */
  set(key: string, value: V, ttlMs: number): void {
    const now = this.now();
    if (now >= this.nextSweep) this.sweep();
    this.entries.delete(key);
    this.entries.set(key, { value, expires: now + ttlMs });
    while (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  /** Sweeps if a sweep is due (the janitor calls it, so an idle proxy sheds what expired too). */
  sweepIfDue(): void {
    if (this.now() >= this.nextSweep) this.sweep();
  }

  /** Removes every expired entry; returns how many went. */
  sweep(): number {
    const now = this.now();
    this.nextSweep = now + this.sweepEveryMs;
    let removed = 0;
    for (const [key, e] of this.entries) {
      if (e.expires <= now) {
        this.entries.delete(key);
        removed++;
      }
    }
    return removed;
  }

  /** Keys from least to most recently used (tests, diagnostics). */
  keys(): string[] {
    return [...this.entries.keys()];
  }

  clear(): void {
    this.entries.clear();
  }
}
