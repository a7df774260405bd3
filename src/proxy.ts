// Wires one proxy instance together: configuration, TLS, auth_query, pools,
// cancel keys and the listener. Used by the CLI and, in process, by the tests.
import cluster from 'node:cluster';
import { AuthQuery } from './auth/auth-query.js';
import { Listener } from './client/listener.js';
import { ParameterPolicy } from './client/parameters.js';
import type { ClientSession } from './client/session.js';
import type { Config } from './config/index.js';
import type { Logger } from './log/logger.js';
import { CancelRegistry } from './pool/cancel.js';
import { PoolManager } from './pool/manager.js';
import { TlsContextProvider } from './tls/context.js';
import { currentWorkerId, isCancelMessage } from './workers/messages.js';

export interface ProxyContext {
  config: Config;
  log: Logger;
  tls: TlsContextProvider;
  authQuery: AuthQuery;
  pools: PoolManager;
  cancels: CancelRegistry;
  parameters: ParameterPolicy;
  /** Logged-in clients, for the janitor's timeouts. */
  clients: Set<ClientSession>;
}

/** How often the janitor looks at timeouts and pool sizes (PgBouncer's runs about once a second). */
const JANITOR_INTERVAL_MS = 250;

export interface RunningProxy {
  port: number;
  context: ProxyContext;
  close(): Promise<void>;
}

export async function startProxy(config: Config, log: Logger): Promise<RunningProxy> {
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
        connectTimeoutMs: config.server_connect_timeout * 1000,
      },
      log.child({ component: 'auth_query' }),
    ),
    pools: new PoolManager(log, {
      maxDbConnections: config.max_db_connections,
      maxUserConnections: (user) => config.users[user]?.max_user_connections ?? config.max_user_connections,
    }),
    cancels: new CancelRegistry(
      cluster.isWorker ? currentWorkerId() : 0,
      cluster.isWorker ? (processId, secretKey) => process.send!({ type: 'pg-ingress:cancel', processId, secretKey }) : null,
    ),
    parameters: new ParameterPolicy(config.track_extra_parameters, config.ignore_startup_parameters),
    clients: new Set(),
  };
  // A cancel that reached another worker, relayed by the primary.
  const onMessage = (msg: unknown): void => {
    if (isCancelMessage(msg)) context.cancels.forward(msg.processId, msg.secretKey);
  };
  if (cluster.isWorker) process.on('message', onMessage);
  const janitor = setInterval(() => {
    const now = Date.now();
    context.pools.tick(now);
    for (const client of context.clients) client.tick(now);
  }, JANITOR_INTERVAL_MS);
  janitor.unref();
  const listener = new Listener(context);
  const port = await listener.listen(config.listen_addr, config.listen_port);
  log.info({ listen_addr: config.listen_addr, listen_port: port }, 'pg-ingress listening');
  return {
    port,
    context,
    async close() {
      clearInterval(janitor);
      process.off('message', onMessage);
      await listener.close();
      context.pools.closeAll();
      context.tls.close();
      await context.authQuery.close();
    },
  };
}
