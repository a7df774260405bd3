// The last resort: an exception or a rejected promise that no connection's own
// guard caught is logged (with the connection id when the error carries one)
// and counted, and the process goes on serving everyone else. It reports bugs;
// it is not how errors are handled (each connection ends its own faults in an
// ErrorResponse, see client/session.ts deliver()).
import type { Logger } from '../log/logger.js';
import { processCounters } from '../stats/process-counters.js';

/** An error that knows which client connection it came from. */
export interface ConnectionFault {
  conn?: number;
}

let installed: { uncaught: (err: unknown) => void; rejected: (reason: unknown) => void } | null = null;

export function installSafetyNet(log: Logger): void {
  if (installed) return;
  const report = (kind: string, err: unknown): void => {
    processCounters.uncaughtFaults++;
    const e = err instanceof Error ? err : new Error(String(err));
    log.error({ kind, conn: (e as ConnectionFault).conn, err: e.stack ?? e.message }, 'internal fault caught by the last-resort handler; still serving (please report this)');
  };
  installed = { uncaught: (err) => report('uncaughtException', err), rejected: (reason) => report('unhandledRejection', reason) };
  process.on('uncaughtException', installed.uncaught);
  process.on('unhandledRejection', installed.rejected);
}

/** For tests: takes the handlers off again. */
export function removeSafetyNet(): void {
  if (!installed) return;
  process.off('uncaughtException', installed.uncaught);
  process.off('unhandledRejection', installed.rejected);
  installed = null;
}
