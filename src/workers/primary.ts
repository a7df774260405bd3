// The primary process when `workers` > 1: forks the workers that share the
// listening port (node:cluster), keeps the one budget of server and client
// slots they all draw from (budget/host.ts), restarts one that dies (its slots
// are free at once), relays cancel requests to the worker that owns the key,
// serves the metrics endpoint with every worker's statistics merged, holds the
// configuration and runs controls across the workers (control-relay.ts), and
// stops them all on a signal, killing any that outlast shutdown_timeout.
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import type { Config } from '../config/index.js';
import type { ShutdownMode } from '../control/control.js';
import { ShutdownRequests } from '../control/shutdown-requests.js';
import type { Logger } from '../log/logger.js';
import type { MetricsEndpoint, MetricsServer } from '../metrics/server.js';
import { BudgetHost } from '../budget/host.js';
import { isToLedger } from '../budget/messages.js';
import { PrimaryCollector } from '../stats/collector.js';
import { listenForSignals } from '../control/signals.js';
import { startStatsLog } from '../stats/log-stats.js';
import { ControlRelay } from './control-relay.js';
import { isCancelMessage, isMessage, workerOfProcessId } from './messages.js';

/** How long past shutdown_timeout the primary waits for a worker before killing it. */
const WORKER_EXIT_GRACE_MS = 5000;

export interface PrimaryOptions {
  count: number;
  config: Config;
  /** Reads the configuration again for a reload; throws ConfigError. */
  loadConfig: () => Config;
  log: Logger;
}

/** Runs until every worker has stopped; the exit code is 1 if one had to be killed. */
export async function runPrimary({ count, config, loadConfig, log }: PrimaryOptions): Promise<number> {
  // Shared so that a client resuming a TLS session may land on any worker.
  const ticketKeys = randomBytes(48).toString('base64');
  const workers = new Map<number, Worker>();
  /** Workers that are listening (they said so); the ones whose statistics count. */
  const serving = new Set<Worker>();
  const stats = new PrimaryCollector(() => serving, () => relay.reloads);
  let metrics: Promise<MetricsServer | null> | null = null;
  let stopping = false;
  const budget = new BudgetHost((id, msg) => {
    const worker = workers.get(id);
    if (worker?.isConnected()) worker.send(msg);
  });
  const shutdowns = new ShutdownRequests();
  // Controls go to the workers that serve: one still starting has no handler for them yet (it catches up when ready).
  const relay = new ControlRelay(config, { workers: () => serving, loadConfig, shutdown: (mode) => shutdowns.request(mode, false), log });
  // One stats line for the whole proxy (log_stats), from every worker's numbers.
  const stopStatsLog = startStatsLog(stats, () => relay.config, log);

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
    // A send to a worker that just died fails with an 'error' event: without a listener it would take the primary down.
    worker.on('error', (err: Error) => log.warn({ worker: id, err: err.message }, 'message to a worker failed'));
    worker.on('message', (msg: unknown) => {
      if (isToLedger(msg)) {
        if (workers.get(id) === worker) budget.onMessage(id, msg);
      } else if (relay.onMessage(worker, msg)) {
        // configuration and controls
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
        relay.workerReady(worker);
        serving.add(worker);
        if (metrics === null && msg.metrics && !stopping) startMetrics(msg.metrics);
      }
    });
    worker.on('exit', (code, signal) => {
      serving.delete(worker);
      relay.workerGone(worker); // a control waiting for it would wait forever
      if (workers.get(id) === worker) {
        workers.delete(id);
        budget.workerGone(id); // its servers and clients are gone with it
      }
      if (stopping) return;
      log.error({ worker: id, code, signal }, 'worker exited unexpectedly; starting a new one');
      setTimeout(() => {
        if (!stopping) fork(id);
      }, 1000).unref();
    });
  };

  for (let id = 1; id <= count; id++) fork(id);
  log.info({ workers: count }, 'pg-ingress primary started its workers');

  const signals = listenForSignals(shutdowns, (control) => void relay.run(control).then((o) => log.info({ ...o }, `${control.kind} done`)), log);
  const mode = await shutdowns.first();
  log.info({ mode }, 'shutting down workers');
  stopping = true; // /readyz answers 503 from now on
  const tell = (m: ShutdownMode): void => {
    for (const w of workers.values()) if (w.isConnected()) w.send({ type: 'pg-ingress:shutdown', mode: m });
  };
  tell(mode);
  void shutdowns.immediate().then(() => tell('immediate'));
  // A worker that outlasts its own shutdown_timeout is stuck: it is killed, and the exit code says so.
  const boundMs = relay.config.shutdown_timeout * 1000 + WORKER_EXIT_GRACE_MS;
  let killed = 0;
  await Promise.all(
    [...workers.values()].map(
      (w) =>
        new Promise<void>((resolve) => {
          if (w.process.exitCode !== null || w.process.signalCode !== null) return resolve();
          const timer = setTimeout(() => {
            killed++;
            log.error({ worker: w.id, waited_ms: boundMs }, 'worker did not stop in time; killing it');
            w.process.kill('SIGKILL');
          }, boundMs);
          w.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
        }),
    ),
  );
  signals.stop();
  stopStatsLog();
  budget.close();
  const server = await (metrics as Promise<MetricsServer | null> | null);
  await server?.close();
  return killed > 0 ? 1 : 0;
}
