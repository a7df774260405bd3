// What workers and the primary say to each other.
import type { Config } from '../config/index.js';
import type { Control, ControlOutcome, ShutdownMode } from '../control/control.js';
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

// Configuration and controls. The primary reads the configuration and hands it
// to each worker at start (config-request → config). A worker's console sends a
// control to the primary (control-request → control-reply); the primary has
// every worker apply it (control → control-done), or, for RELOAD and SET,
// prepares the new configuration in all of them and commits it only if every
// one could (reload-prepare → reload-prepared, then reload-commit or
// reload-abort → reload-done). shutdown asks a worker to stop as a signal would.

export interface ConfigRequest {
  type: 'pg-ingress:config-request';
}
export interface ConfigMessage {
  type: 'pg-ingress:config';
  config: Config;
  /** PAUSE and DISABLE in effect, for the new worker to start with. */
  states: DatabaseStates;
}
export interface DatabaseStates {
  pausedAll: boolean;
  paused: string[];
  disabled: string[];
}
export interface ControlRequest {
  type: 'pg-ingress:control-request';
  id: number;
  control: Control;
}
export interface ControlReply {
  type: 'pg-ingress:control-reply';
  id: number;
  outcome: ControlOutcome;
}
export interface ControlMessage {
  type: 'pg-ingress:control';
  id: number;
  control: Control;
}
export interface ControlDone {
  type: 'pg-ingress:control-done';
  id: number;
  error: string | null;
}
export interface ReloadPrepare {
  type: 'pg-ingress:reload-prepare';
  id: number;
  config: Config;
}
export interface ReloadPrepared {
  type: 'pg-ingress:reload-prepared';
  id: number;
  error: string | null;
}
/** Commit or abort the reload prepared as `reload`; `id` is this step's own, for its reply. */
export interface ReloadCommit {
  type: 'pg-ingress:reload-commit';
  id: number;
  reload: number;
}
export interface ReloadAbort {
  type: 'pg-ingress:reload-abort';
  id: number;
  reload: number;
}
export interface ReloadDone {
  type: 'pg-ingress:reload-done';
  id: number;
}
/** PAUSE and DISABLE as they stand, sent to a worker once it serves (it may have started on older ones). */
export interface StatesMessage {
  type: 'pg-ingress:states';
  states: DatabaseStates;
}
export interface ShutdownMessage {
  type: 'pg-ingress:shutdown';
  mode: ShutdownMode;
}

type Message =
  | CancelMessage
  | StatsRequest
  | StatsReply
  | ClusterStatsRequest
  | ClusterStatsReply
  | WorkerReady
  | ConfigRequest
  | ConfigMessage
  | ControlRequest
  | ControlReply
  | ControlMessage
  | ControlDone
  | ReloadPrepare
  | ReloadPrepared
  | ReloadCommit
  | ReloadAbort
  | ReloadDone
  | StatesMessage
  | ShutdownMessage;

export function isMessage<T extends Message['type']>(msg: unknown, type: T): msg is Extract<Message, { type: T }> {
  return typeof msg === 'object' && msg !== null && (msg as { type?: unknown }).type === type;
}
