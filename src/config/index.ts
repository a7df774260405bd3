// Public API of the configuration layer: loadConfig() and the types it returns.
export { loadConfig, ConfigError, type LoadOptions } from './load.js';
export { parseDsn, DsnError, DSN_KEYS, type DsnFields } from './dsn.js';
export { BITNAMI_VARS, PG_INGRESS_PREFIX, pgIngressVar } from './env.js';
export {
  configSchema,
  type ClientSslMode,
  type Config,
  type DatabaseEntry,
  type LogLevel,
  type PoolMode,
  type TlsProtocol,
  type UserEntry,
} from './schema.js';
