// Routes a requested database name to an upstream target through the DSN map:
// an exact entry first, then the '*' fallback (whose host may name the
// database, as in `{db}-rw`).
import type { Config, DatabaseEntry, PoolMode } from '../config/index.js';

export interface Route {
  /** Pool name as shown in logs and metrics: the requested database. */
  database: string;
  host: string;
  port: number;
  dbname: string;
  entry: DatabaseEntry;
  poolMode: PoolMode;
  poolSize: number;
  authDbname: string;
}

const DNS_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$/;

export function route(config: Config, database: string): Route | null {
  const entry = config.databases[database] ?? config.databases['*'];
  if (!entry) return null;
  // A client-chosen name becomes part of a host name only if it is a plain DNS label.
  if (entry.host.includes('{db}') && !DNS_LABEL.test(database)) return null;
  const dbname = entry.dbname ?? database;
  return {
    database,
    host: entry.host.replaceAll('{db}', database),
    port: entry.port,
    dbname,
    entry,
    poolMode: entry.pool_mode ?? config.pool_mode,
    poolSize: entry.pool_size ?? config.default_pool_size,
    authDbname: entry.auth_dbname ?? config.auth_dbname ?? dbname,
  };
}
