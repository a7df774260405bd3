// Wires one proxy instance together: configuration, TLS, auth_query, pools,
// cancel keys, statistics and the listener (and, in a single-process proxy,
// the metrics endpoint). Used by the CLI and, in process, by the tests.
import cluster from 'node:cluster';
import { Budget } from './budget/budget.js';
import { Listener } from './client/listener.js';
import { clientTimeouts, goingAway } from './client/session.js';
import { ConfigError, type Config } from './config/index.js';
import { freezeConfig } from './config/freeze.js';
import type { ProxyContext } from './context.js';
import { applyControl, isLocalControl } from './control/apply.js';
import type { Control, ShutdownMode } from './control/control.js';
import { LocalOperator, ReloadCounts, WorkerOperator, type ProcessHooks } from './control/operator.js';
import { createAuthQuery, createAuthThrottle, createParameterPolicy, prepareReload, type PreparedReload } from './control/reload.js';

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
import { currentWorkerId, isCancelMessage, isMessage, type DatabaseStates } from './workers/messages.js';
import { listenWithReusePort } from './workers/reuse-port.js';

/** How often the janitor looks at timeouts and pool sizes (PgBouncer's runs about once a second). */
const JANITOR_INTERVAL_MS = 250;
/** How often a shutdown looks whether it may finish (it waits on clients and servers, not on time). */
const SHUTDOWN_POLL_MS = 50;

export interface ProxyOptions {
  /** RELOAD and SHUTDOWN: what the process owner does. By default RELOAD fails (no file to read) and SHUTDOWN stops this proxy. */
  hooks?: Partial<ProcessHooks>;
  /** PAUSE and DISABLE to start with (a worker that starts while the others are paused). */
  states?: DatabaseStates;
}

export interface RunningProxy {
  port: number;
  /** Port of the metrics endpoint this process serves, or null (disabled, or served by the primary). */
  metricsPort: number | null;
  context: ProxyContext;
  close(): Promise<void>;
  /**
   * Graceful shutdown; either way it stops accepting (and /readyz answers 503)
   * and ends in close(), after `timeoutMs` at the latest.
   * - wait_for_clients (SIGTERM): each pooled client is told to go at its next
   *   idle point, session clients finish; done once no client is left.
   * - wait_for_servers (SIGINT): clients waiting for a server are told to go,
   *   no new transaction starts; done once every server is released.
   * - immediate: close() now.
   */
  shutdown(mode: ShutdownMode, timeoutMs: number): Promise<void>;
}

export async function startProxy(config: Config, log: Logger, options: ProxyOptions = {}): Promise<RunningProxy> {
  const worker = cluster.isWorker ? currentWorkerId() : 0;
  let listener: Listener | null = null;
  // With workers the primary keeps the one budget of the whole proxy; alone, this process does.
  const budget = cluster.isWorker ? Budget.shared({ send: (msg) => process.send!(msg), on: (event, l) => process.on(event, l) }) : Budget.local();
  const snapshot = (): WorkerSnapshot =>
    takeSnapshot({
      worker,
      config: context.config, // as it is now: a reload replaces it
      pools: context.pools.all(),
      clients: context.clients,
      connections: (listener?.clientCount ?? 0) - context.adminConsoles,
      states: context.pools,
      listeners: listener ? [listener.netServer] : [],
    });
  /** Reloads decided here (alone; with workers the primary counts them). */
  const reloads = new ReloadCounts();
  const context: ProxyContext = {
    config,
    log,
    tls: await TlsContextProvider.create(config, log),
    authQuery: createAuthQuery(config, log),
    authThrottle: createAuthThrottle(config, log),
    budget,
    pools: new PoolManager(log, budget),
    cancels: new CancelRegistry(
      cluster.isWorker ? currentWorkerId() : 0,
      cluster.isWorker ? (processId, secretKey) => process.send!({ type: 'pg-ingress:cancel', processId, secretKey }) : null,
    ),
    parameters: createParameterPolicy(config),
    clients: new Set(),
    stats: cluster.isWorker ? new WorkerCollector(snapshot) : new LocalCollector(snapshot, reloads),
    adminConsoles: 0,
    operator: null as unknown as ProxyContext['operator'], // set below: it needs the context
  };
  const hooks: ProcessHooks = {
    loadConfig:
      options.hooks?.loadConfig ??
      (() => {
        throw new ConfigError(['this proxy was started without a configuration source to read again']);
      }),
    shutdown: options.hooks?.shutdown ?? ((mode) => void running.shutdown(mode, context.config.shutdown_timeout * 1000)),
  };
  const workerOperator = cluster.isWorker ? new WorkerOperator((msg) => process.send!(msg)) : null;
  context.operator = workerOperator ?? new LocalOperator(context, hooks, log, reloads);
  if (options.states) context.pools.setStates(options.states);
  /** Reloads the primary asked us to prepare, by request id; and those it aborted before we were ready (a late prepare is dropped). */
  const preparedReloads = new Map<number, PreparedReload>();
  const abortedReloads = new Set<number>();
  const onMessage = (msg: unknown): void => {
    // A cancel that reached another worker, relayed by the primary.
    if (isCancelMessage(msg)) context.cancels.forward(msg.processId, msg.secretKey);
    // The primary gathers every worker's statistics.
    else if (isMessage(msg, 'pg-ingress:stats-request')) process.send!({ type: 'pg-ingress:stats-reply', id: msg.id, snapshot: snapshot() });
    else if (isMessage(msg, 'pg-ingress:control-reply')) workerOperator?.onReply(msg);
    else if (isMessage(msg, 'pg-ingress:control')) void runControl(msg.id, msg.control);
    else if (isMessage(msg, 'pg-ingress:reload-prepare')) {
      prepareReload(context, freezeConfig(msg.config)).then(
        (prepared) => {
          if (abortedReloads.delete(msg.id)) return prepared.abort(); // the primary gave up waiting for us
          preparedReloads.set(msg.id, prepared);
          process.send!({ type: 'pg-ingress:reload-prepared', id: msg.id, error: null });
        },
        (err: Error) => process.send!({ type: 'pg-ingress:reload-prepared', id: msg.id, error: err.message }),
      );
    } else if (isMessage(msg, 'pg-ingress:reload-commit') || isMessage(msg, 'pg-ingress:reload-abort')) {
      const prepared = preparedReloads.get(msg.reload);
      preparedReloads.delete(msg.reload);
      if (msg.type === 'pg-ingress:reload-commit') prepared?.commit();
      else if (prepared) prepared.abort();
      else abortedReloads.add(msg.reload);
      process.send!({ type: 'pg-ingress:reload-done', id: msg.id });
    } else if (isMessage(msg, 'pg-ingress:states')) context.pools.setStates(msg.states);
    else if (isMessage(msg, 'pg-ingress:shutdown')) hooks.shutdown(msg.mode);
  };
  /** A control the primary relays to every worker; it answers when this worker is done. */
  const runControl = async (id: number, control: Control): Promise<void> => {
    let error: string | null = null;
    try {
      if (isLocalControl(control)) await applyControl(context, control, worker);
    } catch (err) {
      error = (err as Error).message;
    }
    process.send!({ type: 'pg-ingress:control-done', id, error });
  };
  if (cluster.isWorker) process.on('message', onMessage);
  const janitor = setInterval(() => {
    const now = Date.now();
    context.pools.tick(now);
    const timeouts = clientTimeouts(context.config);
    for (const client of context.clients) client.tick(now, timeouts);
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
  let closed = false;
  const metricsAt: MetricsEndpoint | null =
    config.metrics_port === null ? null : { host: config.metrics_listen_addr, port: config.metrics_port, authToken: config.metrics_auth_token };
  // With workers the primary serves metrics for all of them; this tells it where, and the token.
  if (cluster.isWorker) process.send!({ type: 'pg-ingress:worker-ready', metrics: metricsAt });
  const metrics = metricsAt && !cluster.isWorker ? await startMetrics(metricsAt, context, () => !closing, log) : null;
  const running: RunningProxy = {
    port,
    metricsPort: metrics?.port ?? null,
    context,
    async shutdown(mode, timeoutMs) {
      closing = true; // /readyz answers 503 from now on
      clientListener.stopAccepting();
      const deadline = Date.now() + timeoutMs;
      let done = (): boolean => true;
      if (mode === 'wait_for_clients') {
        for (const client of context.clients) client.drain();
        done = () => context.clients.size === 0;
      } else if (mode === 'wait_for_servers') {
        // As PgBouncer: PAUSE everything, and clients waiting for a server are not going to get one.
        context.pools.pause(null);
        for (const client of context.clients) if (client.isWaiting) client.kill(goingAway());
        done = () => [...context.pools.all()].every((pool) => pool.total === 0);
      }
      while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, SHUTDOWN_POLL_MS));
      if (!done()) log.warn({ clients: context.clients.size, mode }, 'shutdown_timeout: closing what is still connected');
      await running.close();
    },
    async close() {
      if (closed) return;
      closed = true;
      closing = true; // /readyz answers 503 from now on
      // Told why, not just cut off: a driver reconnects to another replica.
      for (const client of [...context.clients]) client.kill(goingAway());
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
