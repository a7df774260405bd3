// What workers and the primary say to each other.
import type { MetricsEndpoint } from '../metrics/endpoint.js';
import type { WorkerSnapshot } from '../stats/snapshot.js';

export { currentWorkerId, MAX_WORKER_ID, WORKER_SHIFT, workerOfProcessId } from './worker-id.js';

export interface CancelMessage {
  type: 'pg-ingress:cancel';
  processId: number;
  secretKey: number;
}

export function isCancelMessage(msg: unknown): msg is CancelMessage {
  return typeof msg === 'object' && msg !== null && (msg as { type?: unknown }).type === 'pg-ingress:cancel';
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
