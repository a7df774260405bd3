// Cumulative counters of one pool, as PgBouncer keeps them for SHOW STATS:
// plain number fields that the relay bumps on events it already sees (a chunk,
// a query's first message, a ReadyForQuery), read only when a snapshot is taken.
// Times accumulate in milliseconds from performance.now() and are reported in
// microseconds, PgBouncer's unit.

/** Counter values as reported (times in microseconds); JSON-safe for IPC. */
export interface CounterValues {
  xact_count: number;
  query_count: number;
  server_assignment_count: number;
  received: number;
  sent: number;
  xact_time: number;
  query_time: number;
  wait_time: number;
}

export const COUNTER_NAMES = ['xact_count', 'query_count', 'server_assignment_count', 'received', 'sent', 'xact_time', 'query_time', 'wait_time'] as const satisfies readonly (keyof CounterValues)[];

export function zeroCounters(): CounterValues {
  return { xact_count: 0, query_count: 0, server_assignment_count: 0, received: 0, sent: 0, xact_time: 0, query_time: 0, wait_time: 0 };
}

export function addCounters(into: CounterValues, more: CounterValues): CounterValues {
  for (const k of COUNTER_NAMES) into[k] += more[k];
  return into;
}

export class PoolCounters {
  /** Transactions: a first query after ReadyForQuery 'I', ended by the next ReadyForQuery 'I'. */
  xactCount = 0;
  /** Queries: a first message after a ReadyForQuery with nothing outstanding, ended by the next one. */
  queryCount = 0;
  /** Times a server was attached to a client. */
  serverAssignmentCount = 0;
  /** Bytes received from clients. */
  bytesReceived = 0;
  /** Bytes sent to clients. */
  bytesSent = 0;
  xactTimeMs = 0;
  queryTimeMs = 0;
  /** Time clients waited for a server. */
  waitTimeMs = 0;

  /** Totals at the start of the current stats period, and what the last whole period added (for the avg_ columns). */
  private periodStart: CounterValues = zeroCounters();
  lastPeriod: CounterValues = zeroCounters();

  values(): CounterValues {
    const us = (ms: number): number => Math.round(ms * 1000);
    return {
      xact_count: this.xactCount,
      query_count: this.queryCount,
      server_assignment_count: this.serverAssignmentCount,
      received: this.bytesReceived,
      sent: this.bytesSent,
      xact_time: us(this.xactTimeMs),
      query_time: us(this.queryTimeMs),
      wait_time: us(this.waitTimeMs),
    };
  }

  /** Closes a stats period (stats_period, src/stats/period.ts): the averages are computed from it. */
  rollPeriod(): void {
    const now = this.values();
    const delta = zeroCounters();
    for (const k of COUNTER_NAMES) delta[k] = now[k] - this.periodStart[k];
    this.lastPeriod = delta;
    this.periodStart = now;
  }
}
