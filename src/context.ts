// What the parts of one proxy instance share, as types only: proxy.ts builds
// it, the listener, the login and the admin console read it. It sits at the
// bottom of the import graph (nothing it names imports it back), so no layer
// reaches the wiring module.
import type { AuthQuery } from './auth/auth-query.js';
import type { AuthThrottle } from './auth/throttle.js';
import type { Budget } from './budget/budget.js';
import type { ParameterPolicy } from './client/parameters.js';
import type { ClientSession } from './client/session.js';
import type { Config } from './config/index.js';
import type { Operator } from './control/control.js';
import type { Logger } from './log/logger.js';
import type { CancelRegistry } from './pool/cancel.js';
import type { PoolManager } from './pool/manager.js';
import type { StatsCollector } from './stats/collector.js';
import type { TlsContextProvider } from './tls/context.js';

export interface ProxyContext {
  /** The running configuration: a reload replaces it, so read it at the moment of use. */
  config: Config;
  log: Logger;
  tls: TlsContextProvider;
  authQuery: AuthQuery;
  /** Auth-failure throttling per (client address, database). */
  authThrottle: AuthThrottle;
  pools: PoolManager;
  /** Server and client slots of the whole proxy, across workers. */
  budget: Budget;
  cancels: CancelRegistry;
  parameters: ParameterPolicy;
  /** Logged-in clients, for the janitor's timeouts. */
  clients: Set<ClientSession>;
  /** Statistics of this process, or of every worker (the admin console asks it). */
  stats: StatsCollector;
  /** Admin console connections open now (not pool clients). */
  adminConsoles: number;
  /** Runs the console's controls (PAUSE, RELOAD, …) across every worker. */
  operator: Operator;
}
