// The primary process when `workers` > 1: forks the workers that share the
// listening port (node:cluster), restarts one that dies, relays cancel
// requests to the worker that owns the key, and stops them all on SIGTERM.
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../log/logger.js';
import { isCancelMessage, workerOfProcessId } from './messages.js';

export async function runPrimary(count: number, log: Logger): Promise<number> {
  // Shared so that a client resuming a TLS session may land on any worker.
  const ticketKeys = randomBytes(48).toString('base64');
  const workers = new Map<number, Worker>();
  let stopping = false;

  const fork = (id: number): void => {
    const worker = cluster.fork({ PG_INGRESS_WORKER_ID: String(id), PG_INGRESS_TICKET_KEYS: ticketKeys });
    workers.set(id, worker);
    worker.on('message', (msg: unknown) => {
      if (!isCancelMessage(msg)) return;
      const owner = workers.get(workerOfProcessId(msg.processId));
      if (owner && owner !== worker) owner.send(msg);
    });
    worker.on('exit', (code, signal) => {
      if (workers.get(id) === worker) workers.delete(id);
      if (stopping) return;
      log.error({ worker: id, code, signal }, 'worker exited unexpectedly; starting a new one');
      setTimeout(() => fork(id), 1000).unref();
    });
  };

  for (let id = 1; id <= count; id++) fork(id);
  log.info({ workers: count }, 'pg-ingress primary started its workers');

  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info({ signal }, 'shutting down workers');
      stopping = true;
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await Promise.all(
    [...workers.values()].map(
      (w) =>
        new Promise<void>((resolve) => {
          w.once('exit', () => resolve());
          w.process.kill('SIGTERM');
        }),
    ),
  );
  return 0;
}
