// Counters of events that belong to no pool: failed and refused logins, and
// faults the last-resort handler caught. Plain number fields bumped where the
// event happens (`processCounters.uncaughtFaults++`), read when a snapshot is
// taken. Each worker's values travel to the primary in its snapshot and are summed.
// Nothing here imports anything, so any layer may count.

export interface ProcessCounterValues {
  /** Logins refused for a wrong password or an unknown user (28P01). */
  auth_failures: number;
  /** Logins refused by the auth-failure throttle before any lookup. */
  auth_throttled: number;
  /** auth_query lookups refused because every slot and the wait queue were taken (53300). */
  auth_lookups_rejected: number;
  /** Exceptions and rejections that reached the process-wide last-resort handler. */
  uncaught_faults: number;
}

export const processCounters = {
  authFailures: 0,
  authThrottled: 0,
  authLookupsRejected: 0,
  uncaughtFaults: 0,
};

export const PROCESS_COUNTER_NAMES = ['auth_failures', 'auth_throttled', 'auth_lookups_rejected', 'uncaught_faults'] as const satisfies readonly (keyof ProcessCounterValues)[];

export function processCounterValues(): ProcessCounterValues {
  return {
    auth_failures: processCounters.authFailures,
    auth_throttled: processCounters.authThrottled,
    auth_lookups_rejected: processCounters.authLookupsRejected,
    uncaught_faults: processCounters.uncaughtFaults,
  };
}

export function zeroProcessCounters(): ProcessCounterValues {
  return { auth_failures: 0, auth_throttled: 0, auth_lookups_rejected: 0, uncaught_faults: 0 };
}

export function addProcessCounters(into: ProcessCounterValues, more: ProcessCounterValues): ProcessCounterValues {
  for (const k of PROCESS_COUNTER_NAMES) into[k] += more[k];
  return into;
}
