// What workers and the primary say to each other, and how a cancel key names
// its worker: the top bits of the processId we hand out carry the worker id.
import type { MetricsEndpoint } from '../metrics/server.js';
import type { WorkerSnapshot } from '../stats/snapshot.js';

export const WORKER_SHIFT = 24;
export const MAX_WORKER_ID = 126;

export interface CancelMessage {
  type: 'pg-ingress:cancel';
  processId: number;
  secretKey: number;
}

export function isCancelMessage(msg: unknown): msg is CancelMessage {
  return typeof msg === 'object' && msg !== null && (msg as { type?: unknown }).type === 'pg-ingress:cancel';
}

export function workerOfProcessId(processId: number): number {
  return processId >>> WORKER_SHIFT;
}

/** This process's worker id: 1…126 in a worker, 0 in a single-process proxy. */
export function currentWorkerId(): number {
  const id = Number(process.env.PG_INGRESS_WORKER_ID ?? 0);
  return Number.isInteger(id) && id > 0 && id <= MAX_WORKER_ID ? id : 0;
}

// Statistics: the primary asks each worker for a snapshot (stats-request →
// stats-reply); a worker's admin console asks the primary for all of them
// (cluster-stats-request → cluster-stats-reply). Replies carry the request id.

export interface StatsRequest {
  type: 'pg-ingress:stats-request';
  id: number;
}

export interface StatsReply {
  type: 'pg-ingress:stats-reply';
  id: number;
  snapshot: WorkerSnapshot;
}

export interface ClusterStatsRequest {
  type: 'pg-ingress:cluster-stats-request';
  id: number;
}

export interface ClusterStatsReply {
  type: 'pg-ingress:cluster-stats-reply';
  id: number;
  snapshots: WorkerSnapshot[];
}

/**
 * A worker is listening; the first one tells the primary where to serve
 * metrics and with which token (null: disabled). The primary never reads the
 * configuration, and IPC stays between our own processes.
 */
export interface WorkerReady {
  type: 'pg-ingress:worker-ready';
  metrics: MetricsEndpoint | null;
}

type Message = CancelMessage | StatsRequest | StatsReply | ClusterStatsRequest | ClusterStatsReply | WorkerReady;

export function isMessage<T extends Message['type']>(msg: unknown, type: T): msg is Extract<Message, { type: T }> {
  return typeof msg === 'object' && msg !== null && (msg as { type?: unknown }).type === type;
}
