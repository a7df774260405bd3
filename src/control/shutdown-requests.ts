// Requests to stop, from signals, the console's SHUTDOWN and the primary:
// the first one picks the mode; a second signal, or a request to stop at once,
// makes it immediate (PgBouncer: a second SIGINT/SIGTERM exits at once).
import type { ShutdownMode } from './control.js';

export class ShutdownRequests {
  private mode: ShutdownMode | null = null;
  private readonly onFirst: Array<(mode: ShutdownMode) => void> = [];
  private readonly onImmediate: Array<() => void> = [];

  /** @param fromSignal a signal: a repeated one means "now" */
  request(mode: ShutdownMode, fromSignal: boolean): void {
    if (this.mode === null) {
      this.mode = mode;
      for (const f of this.onFirst.splice(0)) f(mode);
      if (mode !== 'immediate') return;
    } else if (this.mode === 'immediate' || (!fromSignal && mode !== 'immediate')) return;
    this.mode = 'immediate';
    for (const f of this.onImmediate.splice(0)) f();
  }

  /** The first request's mode. */
  first(): Promise<ShutdownMode> {
    return this.mode !== null ? Promise.resolve(this.mode) : new Promise((resolve) => this.onFirst.push(resolve));
  }

  /** Resolves once the shutdown must not wait any longer. */
  immediate(): Promise<void> {
    return this.mode === 'immediate' ? Promise.resolve() : new Promise((resolve) => this.onImmediate.push(resolve));
  }
}
