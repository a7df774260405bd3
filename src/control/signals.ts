// PgBouncer's signals: SIGHUP reloads, SIGUSR1 pauses, SIGUSR2 resumes,
// SIGTERM waits for clients, SIGINT waits for servers, SIGQUIT (or a second
// stop signal) stops at once.
import type { Logger } from '../log/logger.js';
import type { Control, ShutdownMode } from './control.js';
import type { ShutdownRequests } from './shutdown-requests.js';

const STOP: ReadonlyArray<[NodeJS.Signals, ShutdownMode]> = [
  ['SIGTERM', 'wait_for_clients'],
  ['SIGINT', 'wait_for_servers'],
  ['SIGQUIT', 'immediate'],
];
const CONTROL: ReadonlyArray<[NodeJS.Signals, Control]> = [
  ['SIGHUP', { kind: 'reload' }],
  ['SIGUSR1', { kind: 'pause', database: null }],
  ['SIGUSR2', { kind: 'resume', database: null }],
];

/**
 * @param run runs a control signal; null in a worker, where every signal is
 * the primary's to act on: a terminal's Ctrl-C, or systemd's SIGTERM, reaches
 * the whole process group, and counting that copy as well as the primary's
 * relayed request would make one signal look like two (stop at once)
 */
export function listenForSignals(shutdowns: ShutdownRequests, run: ((control: Control) => void) | null, log: Logger): { stop(): void } {
  const handlers: Array<[NodeJS.Signals, () => void]> = [];
  for (const [signal, mode] of STOP) {
    handlers.push([
      signal,
      () => {
        if (!run) return;
        log.info({ signal, mode }, 'shutdown requested');
        shutdowns.request(mode, true);
      },
    ]);
  }
  for (const [signal, control] of CONTROL) {
    // Always handled: SIGHUP's default kills the process, and SIGUSR1's starts Node's inspector.
    handlers.push([
      signal,
      () => {
        if (!run) return;
        log.info({ signal, control: control.kind }, 'signal received');
        run(control);
      },
    ]);
  }
  for (const [signal, handler] of handlers) process.on(signal, handler);
  return {
    stop() {
      for (const [signal, handler] of handlers) process.off(signal, handler);
    },
  };
}
