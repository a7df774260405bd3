// What workers and the primary say to each other, and how a cancel key names
// its worker: the top bits of the processId we hand out carry the worker id.

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
