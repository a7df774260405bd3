// How a cancel key names its worker: the top bits of the processId we hand out
// carry the worker id. No imports: the pool, the cancel registry and the IPC
// messages all read it.

export const WORKER_SHIFT = 24;
export const MAX_WORKER_ID = 126;

export function workerOfProcessId(processId: number): number {
  return processId >>> WORKER_SHIFT;
}

/** A client's id as SHOW CLIENTS shows it and KILL_CLIENT takes it: unique across workers (connection numbers are per worker). */
export function globalClientId(worker: number, id: number): number {
  return worker * 2 ** 32 + id;
}

/** This process's worker id: 1…126 in a worker, 0 in a single-process proxy. */
export function currentWorkerId(): number {
  const id = Number(process.env.PG_INGRESS_WORKER_ID ?? 0);
  return Number.isInteger(id) && id > 0 && id <= MAX_WORKER_ID ? id : 0;
}
