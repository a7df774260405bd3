// Wires one proxy instance together: configuration, TLS, auth_query, pools,
// cancel keys, statistics and the listener (and, in a single-process proxy,
// the metrics endpoint). Used by the CLI and, in process, by the tests.
import cluster from 'node:cluster';
import { AuthQuery } from './auth/auth-query.js';
import { AuthThrottle } from './auth/throttle.js';
import { Budget } from './budget/budget.js';
import { Listener } from './client/listener.js';
import { ParameterPolicy } from './client/parameters.js';
import type { Config } from './config/index.js';
import type { ProxyContext } from './context.js';

export type { ProxyContext } from './context.js';
import type { Logger } from './log/logger.js';
import { MetricsServer, type MetricsEndpoint } from './metrics/server.js';
import { CancelRegistry } from './pool/cancel.js';
import { PoolManager } from './pool/manager.js';
import { LocalCollector, WorkerCollector } from './stats/collector.js';
import { startStatsLog } from './stats/log-stats.js';
import { everyStatsPeriod } from './stats/period.js';
import { takeSnapshot, type WorkerSnapshot } from './stats/snapshot.js';
import { TlsContextProvider } from './tls/context.js';
import { currentWorkerId, isCancelMessage, isMessage } from './workers/messages.js';
import { listenWithReusePort } from './workers/reuse-port.js';

/** How often the janitor looks at timeouts and pool sizes (PgBouncer's runs about once a second). */
const JANITOR_INTERVAL_MS = 250;

export interface RunningProxy {
  port: number;
  /** Port of the metrics endpoint this process serves, or null (disabled, or served by the primary). */
  metricsPort: number | null;
  context: ProxyContext;
  close(): Promise<void>;
  /**
   * Graceful shutdown: stop accepting (and /readyz answers 503), tell each
   * pooled client to go at its next idle point, let session clients finish,
   * then close() once no client is left or after `timeoutMs`.
   */
  drain(timeoutMs: number): Promise<void>;
}

export async function startProxy(config: Config, log: Logger): Promise<RunningProxy> {
  const worker = cluster.isWorker ? currentWorkerId() : 0;
  let listener: Listener | null = null;
  // With workers the primary keeps the one budget of the whole proxy; alone, this process does.
  const budget = cluster.isWorker ? Budget.shared({ send: (msg) => process.send!(msg), on: (event, l) => process.on(event, l) }) : Budget.local();
  const snapshot = (): WorkerSnapshot =>
    takeSnapshot({ worker, config, pools: context.pools.all(), clients: context.clients, connections: (listener?.clientCount ?? 0) - context.adminConsoles });
  const context: ProxyContext = {
    config,
    log,
    tls: await TlsContextProvider.create(config, log),
    authQuery: new AuthQuery(
      {
        user: config.auth_user,
        password: config.auth_password,
        query: config.auth_query,
        cacheTtlMs: config.auth_cache_ttl * 1000,
        cacheSize: config.auth_cache_size,
        maxConcurrentLookups: config.auth_max_concurrent_lookups,
        connectTimeoutMs: config.server_connect_timeout * 1000,
      },
      log.child({ component: 'auth_query' }),
    ),
    authThrottle: new AuthThrottle(
      { limit: config.auth_failure_limit, windowMs: config.auth_failure_window * 1000, blockMs: config.auth_failure_block * 1000 },
      log.child({ component: 'auth_throttle' }),
    ),
    budget,
    pools: new PoolManager(log, budget),
    cancels: new CancelRegistry(
      cluster.isWorker ? currentWorkerId() : 0,
      cluster.isWorker ? (processId, secretKey) => process.send!({ type: 'pg-ingress:cancel', processId, secretKey }) : null,
    ),
    parameters: new ParameterPolicy(config.track_extra_parameters, config.ignore_startup_parameters),
    clients: new Set(),
    stats: cluster.isWorker ? new WorkerCollector(snapshot) : new LocalCollector(snapshot),
    adminConsoles: 0,
  };
  const onMessage = (msg: unknown): void => {
    // A cancel that reached another worker, relayed by the primary.
    if (isCancelMessage(msg)) context.cancels.forward(msg.processId, msg.secretKey);
    // The primary gathers every worker's statistics.
    else if (isMessage(msg, 'pg-ingress:stats-request')) process.send!({ type: 'pg-ingress:stats-reply', id: msg.id, snapshot: snapshot() });
  };
  if (cluster.isWorker) process.on('message', onMessage);
  const janitor = setInterval(() => {
    const now = Date.now();
    context.pools.tick(now);
    for (const client of context.clients) client.tick(now);
    context.authQuery.sweepExpired();
    context.authThrottle.sweepExpired();
  }, JANITOR_INTERVAL_MS);
  janitor.unref();
  // stats_period read from context.config each period: a reload applies from the next one.
  const stopStatsPeriod = everyStatsPeriod(() => context.config.stats_period, () => {
    for (const pool of context.pools.all()) pool.stats.rollPeriod();
  });
  // With workers the primary writes the one log_stats line for all of them.
  const stopStatsLog = cluster.isWorker ? null : startStatsLog(context.stats, () => context.config, log);
  const clientListener = (listener = new Listener(context));
  const reusePort = listenWithReusePort(config.listen_reuse_port, cluster.isWorker, config.listen_port);
  const port = await clientListener.listen(config.listen_addr, config.listen_port, reusePort);
  log.info({ listen_addr: config.listen_addr, listen_port: port, reuse_port: reusePort }, 'pg-ingress listening');
  let closing = false;
  const metricsAt: MetricsEndpoint | null =
    config.metrics_port === null ? null : { host: config.metrics_listen_addr, port: config.metrics_port, authToken: config.metrics_auth_token };
  // With workers the primary serves metrics for all of them; this tells it where, and the token.
  if (cluster.isWorker) process.send!({ type: 'pg-ingress:worker-ready', metrics: metricsAt });
  const metrics = metricsAt && !cluster.isWorker ? await startMetrics(metricsAt, context, () => !closing, log) : null;
  const running: RunningProxy = {
    port,
    metricsPort: metrics?.port ?? null,
    context,
    async drain(timeoutMs) {
      closing = true; // /readyz answers 503 from now on
      clientListener.stopAccepting();
      for (const client of context.clients) client.drain();
      const deadline = Date.now() + timeoutMs;
      while (context.clients.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      if (context.clients.size > 0) log.warn({ clients: context.clients.size }, 'shutdown_timeout: closing the clients still connected');
      await running.close();
    },
    async close() {
      closing = true; // /readyz answers 503 from now on
      clearInterval(janitor);
      stopStatsPeriod();
      stopStatsLog?.();
      process.off('message', onMessage);
      if (context.stats instanceof WorkerCollector) context.stats.close();
      await clientListener.close();
      context.pools.closeAll();
      context.tls.close();
      await context.authQuery.close();
      await metrics?.close();
    },
  };
  return running;
}

/** The metrics endpoint of a single-process proxy. Not listening is logged, not fatal: clients still get served. */
async function startMetrics(at: MetricsEndpoint, context: ProxyContext, ready: () => boolean, log: Logger): Promise<MetricsServer | null> {
  try {
    const server = await MetricsServer.start({ ...at, collector: context.stats, ready, log });
    log.info({ metrics_listen_addr: at.host, metrics_port: server.port }, 'metrics endpoint listening');
    return server;
  } catch (err) {
    log.error({ err: (err as Error).message, metrics_port: at.port }, 'metrics endpoint could not listen; serving clients without it');
    return null;
  }
}
