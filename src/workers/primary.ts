// The primary process when `workers` > 1: forks the workers that share the
// listening port (node:cluster), keeps the one budget of server and client
// slots they all draw from (budget/host.ts), restarts one that dies (its slots
// are free at once), relays cancel requests to the worker that owns the key,
// serves the metrics endpoint with every worker's statistics merged, and stops
// them all on SIGTERM.
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../log/logger.js';
import type { MetricsEndpoint, MetricsServer } from '../metrics/server.js';
import { BudgetHost } from '../budget/host.js';
import { isToLedger } from '../budget/messages.js';
import { PrimaryCollector } from '../stats/collector.js';
import { isCancelMessage, isMessage, workerOfProcessId } from './messages.js';

export async function runPrimary(count: number, log: Logger): Promise<number> {
  // Shared so that a client resuming a TLS session may land on any worker.
  const ticketKeys = randomBytes(48).toString('base64');
  const workers = new Map<number, Worker>();
  /** Workers that are listening (they said so); the ones whose statistics count. */
  const serving = new Set<Worker>();
  const stats = new PrimaryCollector(() => serving);
  let metrics: Promise<MetricsServer | null> | null = null;
  let stopping = false;
  const budget = new BudgetHost((id, msg) => {
    const worker = workers.get(id);
    if (worker?.isConnected()) worker.send(msg);
  });

  // The primary does not read the configuration: the first worker to listen says where metrics go.
  const startMetrics = (where: MetricsEndpoint): void => {
    // Loaded only when used: the primary stays small without prom-client.
    metrics = import('../metrics/server.js').then(({ MetricsServer }) => MetricsServer.start({ ...where, collector: stats, ready: () => !stopping && serving.size > 0, log })).then(
      (server) => {
        log.info({ metrics_listen_addr: where.host, metrics_port: server.port }, 'metrics endpoint listening');
        return server;
      },
      (err: Error) => {
        log.error({ err: err.message, metrics_port: where.port }, 'metrics endpoint could not listen; serving clients without it');
        return null;
      },
    );
  };

  const fork = (id: number): void => {
    const worker = cluster.fork({ PG_INGRESS_WORKER_ID: String(id), PG_INGRESS_TICKET_KEYS: ticketKeys });
    workers.set(id, worker);
    worker.on('message', (msg: unknown) => {
      if (isToLedger(msg)) {
        if (workers.get(id) === worker) budget.onMessage(id, msg);
      } else if (isCancelMessage(msg)) {
        const owner = workers.get(workerOfProcessId(msg.processId));
        if (owner && owner !== worker) owner.send(msg);
      } else if (isMessage(msg, 'pg-ingress:stats-reply')) {
        stats.onWorkerMessage(msg);
      } else if (isMessage(msg, 'pg-ingress:cluster-stats-request')) {
        // A worker's admin console wants everyone's numbers.
        void stats.snapshots().then((snapshots) => {
          if (worker.isConnected()) worker.send({ type: 'pg-ingress:cluster-stats-reply', id: msg.id, snapshots });
        });
      } else if (isMessage(msg, 'pg-ingress:worker-ready')) {
        serving.add(worker);
        if (metrics === null && msg.metrics && !stopping) startMetrics(msg.metrics);
      }
    });
    worker.on('exit', (code, signal) => {
      serving.delete(worker);
      if (workers.get(id) === worker) {
        workers.delete(id);
        budget.workerGone(id); // its servers and clients are gone with it
      }
      if (stopping) return;
      log.error({ worker: id, code, signal }, 'worker exited unexpectedly; starting a new one');
      setTimeout(() => fork(id), 1000).unref();
    });
  };

  for (let id = 1; id <= count; id++) fork(id);
  log.info({ workers: count }, 'pg-ingress primary started its workers');

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      log.info({ signal }, 'shutting down workers');
      stopping = true; // /readyz answers 503 from now on
      resolve(signal);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  // Workers drain on SIGTERM (up to shutdown_timeout); a second signal here makes them close at once.
  const hurry = (): void => {
    for (const w of workers.values()) w.process.kill('SIGINT');
  };
  process.once('SIGTERM', hurry);
  process.once('SIGINT', hurry);
  await Promise.all(
    [...workers.values()].map(
      (w) =>
        new Promise<void>((resolve) => {
          w.once('exit', () => resolve());
          w.process.kill(signal); // SIGTERM: drain; SIGINT: close at once
        }),
    ),
  );
  budget.close();
  const server = await (metrics as Promise<MetricsServer | null> | null);
  await server?.close();
  return 0;
}
