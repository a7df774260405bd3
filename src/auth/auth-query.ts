// Looks up a user's password verifier with auth_query, run as auth_user through
// node-postgres with the user name as a bound parameter ($1), never spliced into SQL.
// Everything here is keyed by names strangers choose, so every part is bounded:
// verifiers are cached in an LRU of auth_cache_size entries ("no such user"
// only briefly), a database that does not exist is remembered for a few
// seconds per target, at most auth_max_concurrent_lookups lookups run at once
// (a bounded FIFO waits behind them, the rest are refused), and the per-target
// pg.Pool map has a cap. Concurrent logins of one user share one lookup.
// Who looks up and how (auth_user, its password, auth_query, server_tls_*)
// comes with each lookup, from the configuration as it is at that moment, so a
// database's own auth_user and auth_query, and a reload, need nothing else.
import pg from 'pg';
import type { Config, DatabaseEntry } from '../config/schema.js';
import { secretKind } from '../config/userlist.js';
import type { Logger } from '../log/logger.js';
import { parseHosts } from '../pool/hosts.js';
import { isTlsRefusal, pgSslOptions, serverTlsSettings, type ServerTlsSettings } from '../pool/server-tls.js';
import { processCounters } from '../stats/process-counters.js';
import { ExpiringLru } from './expiring-lru.js';

export interface AuthTarget {
  /** One host, or a comma-separated list tried in order until one answers. */
  host: string;
  port: number;
  /** One port per host of a list (or one for all); [port] when absent. */
  ports?: readonly number[];
  dbname: string;
}

/** Who runs the lookup, with what, and how the connection is secured. */
export interface AuthLogin {
  user: string;
  password: string | null;
  query: string;
  /** server_tls_*; plaintext when absent. */
  tls?: ServerTlsSettings;
}

/**
 * A database's lookup login, read from `config` at each use: its own auth_user
 * and auth_query over the global ones (as PgBouncer's per-database keys), and
 * server_tls_* for the connection. The global auth_user's password is
 * auth_password; another auth_user's is its plaintext entry in auth_file, as in
 * PgBouncer, or none (let it in with trust or a certificate).
 */
export function authLoginFor(config: Config, entry: DatabaseEntry): AuthLogin {
  const user = entry.auth_user ?? config.auth_user;
  const listed = Object.hasOwn(config.auth_file_passwords, user) ? config.auth_file_passwords[user]! : null;
  return {
    user,
    password: user === config.auth_user ? config.auth_password : listed !== null && secretKind(listed) === 'plaintext' ? listed : null,
    query: entry.auth_query ?? config.auth_query,
    tls: serverTlsSettings(config),
  };
}

export interface AuthQuerySettings extends AuthLogin {
  cacheTtlMs: number;
  /** Cap on cached verifiers (auth_cache_size). */
  cacheSize: number;
  /** Lookups running at once (auth_max_concurrent_lookups). */
  maxConcurrentLookups: number;
  connectTimeoutMs: number;
  /** Clock; tests pass a fake one. */
  now?: () => number;
}

/** "No such user" (no row, or a NULL password) is cached at most this long, and never beyond auth_cache_ttl. */
export const NEGATIVE_CACHE_TTL_MS = 3000;
/** How long a target whose database does not exist (3D000) is answered from memory. */
export const MISSING_DATABASE_TTL_MS = 3000;
/** Targets remembered as missing, at most. */
export const MISSING_DATABASE_ENTRIES = 1000;
/** Lookups that may wait for a slot, per slot; beyond that a lookup is refused at once. */
export const WAITING_LOOKUPS_PER_SLOT = 16;
/** pg.Pool objects kept (one per host, port and database); the least recently used is ended beyond this. */
export const MAX_AUTH_POOLS = 64;

/** Why a lookup failed, for the operator; the client sees a generic message. */
export class AuthQueryError extends Error {
  constructor(
    readonly kind: 'unreachable' | 'tls' | 'auth_user' | 'no_database' | 'query' | 'busy',
    message: string,
    readonly fix: string,
  ) {
    super(message);
  }
}

/** At most `maxRunning` tasks at once; up to `maxWaiting` more wait in FIFO order; the rest are refused. */
export class LookupLimiter {
  private active = 0;
  private readonly queue: Array<() => void> = [];

  constructor(
    readonly maxRunning: number,
    readonly maxWaiting: number,
  ) {}

  get running(): number {
    return this.active;
  }

  get waiting(): number {
    return this.queue.length;
  }

  /** Runs `task` in a slot; rejects with AuthQueryError('busy') when no slot and no place in the queue is free. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active < this.maxRunning) this.active++;
    else if (this.queue.length < this.maxWaiting) await new Promise<void>((resolve) => this.queue.push(resolve));
    else throw busy(this.maxRunning);
    try {
      return await task();
    } finally {
      // A waiter inherits the slot, so `active` only drops when nobody waits.
      const next = this.queue.shift();
      if (next) next();
      else this.active--;
    }
  }
}

function busy(max: number): AuthQueryError {
  processCounters.authLookupsRejected++;
  return new AuthQueryError('busy', `too many auth_query lookups in progress (${max} running and the wait queue full)`, 'raise auth_max_concurrent_lookups if this happens under normal load; a flood of logins for unknown users or databases ends here by design');
}

/** One pg.Pool and what it was made with: a lookup with other credentials or TLS gets a new one. */
interface AuthPool {
  pool: pg.Pool;
  password: string | null;
  ssl: ReturnType<typeof pgSslOptions>;
  /** server_tls_sslmode it was made for. */
  mode: string;
  /** The server refused TLS under prefer/allow: this pool asks no more. */
  plaintext: boolean;
}

export class AuthQuery {
  private readonly pools = new Map<string, AuthPool>();
  private readonly cache: ExpiringLru<string | null>;
  private readonly missingDatabases: ExpiringLru<true>;
  private readonly inflight = new Map<string, Promise<string | null>>();
  private readonly limiter: LookupLimiter;

  constructor(
    private readonly settings: AuthQuerySettings,
    private readonly log: Logger,
  ) {
    this.cache = new ExpiringLru(settings.cacheSize, { now: settings.now });
    this.missingDatabases = new ExpiringLru(MISSING_DATABASE_ENTRIES, { now: settings.now });
    this.limiter = new LookupLimiter(settings.maxConcurrentLookups, settings.maxConcurrentLookups * WAITING_LOOKUPS_PER_SLOT);
  }

  /** Drops expired verifiers and remembered missing databases (the janitor calls it; at most one sweep a second). */
  sweepExpired(): void {
    this.cache.sweepIfDue();
    this.missingDatabases.sweepIfDue();
  }

  /** Sizes of everything a stranger can grow, for tests and diagnostics. */
  get usage(): { cached: number; missingDatabases: number; running: number; waiting: number; inflight: number; pools: number } {
    return { cached: this.cache.size, missingDatabases: this.missingDatabases.size, running: this.limiter.running, waiting: this.limiter.waiting, inflight: this.inflight.size, pools: this.pools.size };
  }

  /** The stored password (verifier) of `user`, or null when there is no such user or it has none. `login` defaults to the constructor's. */
  lookup(target: AuthTarget, user: string, login: AuthLogin = this.settings): Promise<string | null> {
    const key = cacheKey(target, login, user);
    const hit = this.cache.get(key);
    if (hit !== undefined) return Promise.resolve(hit);
    if (this.missingDatabases.get(targetKey(target))) return Promise.reject(noDatabase(login.user, target, 'remembered from a lookup moments ago'));
    const running = this.inflight.get(key);
    if (running) return running;
    const p = this.limiter
      .run(() => this.query(target, user, login))
      .then((password) => {
        const ttl = password === null ? Math.min(NEGATIVE_CACHE_TTL_MS, this.settings.cacheTtlMs) : this.settings.cacheTtlMs;
        if (ttl > 0) this.cache.set(key, password, ttl);
        return password;
      })
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  /** Drops a cached verifier, e.g. after it failed to verify (the password may have changed). */
  forget(target: AuthTarget, user: string, login: AuthLogin = this.settings): void {
    this.cache.delete(cacheKey(target, login, user));
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()].map((p) => p.pool);
    this.pools.clear();
    this.cache.clear();
    this.missingDatabases.clear();
    await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
  }

  private async query(target: AuthTarget, user: string, login: AuthLogin): Promise<string | null> {
    const hosts = parseHosts(target.host, target.ports ?? [target.port]);
    for (const [i, host] of hosts.entries()) {
      const one = { host: host.host, port: host.port, dbname: target.dbname };
      try {
        return await this.queryOne(one, user, login);
      } catch (err) {
        const e = err instanceof AuthQueryError ? err : classify(err as Error & { code?: string }, login.user, one);
        if (e.kind === 'unreachable' && i < hosts.length - 1) continue; // the next host of the list
        if (e.kind === 'no_database') {
          // Clients choose database names: keep no pool per name that does not exist, and ask again only after a while.
          this.dropPool(one, login);
          this.missingDatabases.set(targetKey(target), true, MISSING_DATABASE_TTL_MS);
          this.log.info({ dbname: target.dbname }, 'auth_query: database does not exist');
          throw e;
        }
        this.log.error({ auth_user: login.user, host: one.host, port: one.port, dbname: one.dbname, kind: e.kind, error: e.message }, `auth_query failed: ${e.fix}`);
        throw e;
      }
    }
    throw new AuthQueryError('unreachable', 'no host to run auth_query on', 'check the database host list');
  }

  /** Runs the lookup on one host; under prefer/allow a server that refuses TLS is asked again in plaintext. */
  private async queryOne(target: AuthTarget, user: string, login: AuthLogin): Promise<string | null> {
    for (;;) {
      const entry = this.pool(target, login);
      try {
        const result = await entry.pool.query<{ password: string | null }>(login.query, [user]);
        const row = result.rows[0];
        return row?.password ?? null;
      } catch (err) {
        const mode = login.tls?.sslmode;
        if ((mode === 'prefer' || mode === 'allow') && !entry.plaintext && isTlsRefusal(err as Error)) {
          this.replacePool(target, login, { ...entry, ssl: false, plaintext: true });
          continue;
        }
        throw err;
      }
    }
  }

  private dropPool(target: AuthTarget, login: AuthLogin): void {
    const key = poolKey(target, login);
    const entry = this.pools.get(key);
    this.pools.delete(key);
    entry?.pool.end().catch(() => undefined);
  }

  private pool(target: AuthTarget, login: AuthLogin): AuthPool {
    const key = poolKey(target, login);
    // Read at each use: the certificate files may have changed (a new context), or the password with a reload.
    const ssl = login.tls ? pgSslOptions(login.tls, target.host) : false;
    const entry = this.pools.get(key);
    const mode = login.tls?.sslmode ?? 'disable';
    if (entry && entry.password === login.password && entry.mode === mode && (entry.plaintext || sameContext(entry.ssl, ssl))) {
      // Most recently used last, so the first key is the one to end when the map is full.
      this.pools.delete(key);
      this.pools.set(key, entry);
      return entry;
    }
    return this.replacePool(target, login, { password: login.password, ssl, mode, plaintext: false });
  }

  private replacePool(target: AuthTarget, login: AuthLogin, how: Omit<AuthPool, 'pool'>): AuthPool {
    const key = poolKey(target, login);
    this.pools.get(key)?.pool.end().catch(() => undefined); // end() lets a query still running on it finish
    this.pools.delete(key);
    const pool = new pg.Pool({
      host: target.host,
      port: target.port,
      database: target.dbname,
      user: login.user,
      password: how.password ?? undefined,
      // Explicit: otherwise node-postgres would read PGSSLMODE from the environment.
      ssl: how.ssl,
      max: 4,
      idleTimeoutMillis: 30_000,
      connectionTimeoutMillis: this.settings.connectTimeoutMs,
      // A hung lookup must give its slot back.
      query_timeout: this.settings.connectTimeoutMs,
      application_name: 'pg-ingress auth_query',
    });
    pool.on('error', () => undefined); // an idle lookup connection dropped: the next query reconnects
    const entry = { ...how, pool };
    this.pools.set(key, entry);
    while (this.pools.size > MAX_AUTH_POOLS) {
      const oldest = this.pools.keys().next().value!;
      this.pools.get(oldest)?.pool.end().catch(() => undefined);
      this.pools.delete(oldest);
    }
    return entry;
  }
}

/** Both plaintext, or TLS over the same context (its certificate files unchanged since). */
function sameContext(a: AuthPool['ssl'], b: AuthPool['ssl']): boolean {
  if (a === false || b === false) return a === b;
  return a.secureContext === b.secureContext;
}

const poolKey = (t: AuthTarget, login: AuthLogin): string => `${t.host}\0${t.port}\0${t.dbname}\0${login.user}`;
const cacheKey = (t: AuthTarget, login: AuthLogin, user: string): string => `${targetKey(t)}\0${login.user}\0${login.query}\0${user}`;
const targetKey = (t: AuthTarget): string => `${t.host}\0${t.port}\0${t.dbname}`;

function noDatabase(authUser: string, t: AuthTarget, why: string): AuthQueryError {
  return new AuthQueryError('no_database', `auth_user "${authUser}" could not connect to ${t.host}:${t.port}/${t.dbname}: database does not exist (${why})`, NO_DATABASE_FIX);
}

const NO_DATABASE_FIX = 'if clients name databases that do not exist this is expected; otherwise set auth_dbname to a database that exists and holds the pgbouncer.get_auth function';

function classify(err: Error & { code?: string }, authUser: string, t: AuthTarget): AuthQueryError {
  const where = `${t.host}:${t.port}/${t.dbname}`;
  switch (err.code) {
    case '28P01':
    case '28000':
      return new AuthQueryError('auth_user', `auth_user "${authUser}" could not log in to ${where}: ${err.message}`, `check auth_password / auth_password_file for auth_user "${authUser}", and that pg_hba.conf lets it connect`);
    case '3D000':
      return new AuthQueryError('no_database', `auth_user "${authUser}" could not connect to ${where}: ${err.message}`, NO_DATABASE_FIX);
    case '42883':
    case '3F000':
    case '42P01':
      return new AuthQueryError('query', `auth_query failed in ${where}: ${err.message}`, 'create the lookup function in this database: run `pg-ingress init-sql` and apply its output as a superuser (or set auth_dbname)');
    case '42501':
      return new AuthQueryError('query', `auth_query failed in ${where}: ${err.message}`, `grant the lookup to auth_user: GRANT USAGE ON SCHEMA pgbouncer and EXECUTE ON FUNCTION pgbouncer.get_auth(text) to a role "${authUser}" is in (see \`pg-ingress init-sql\`); the function must be SECURITY DEFINER and owned by a superuser`);
    case '57P03':
    case '53300':
      return new AuthQueryError('unreachable', `auth_query could not run in ${where}: ${err.message}`, 'the server is starting up or out of connections');
    default:
      if (isTlsFailure(err)) {
        return new AuthQueryError('tls', `TLS to ${where} for auth_query failed: ${err.message}`, 'check server_tls_sslmode and server_tls_ca_file against the certificate the server presents (verify-full also checks the host name)');
      }
      if (err.code === undefined || /^(ECONN|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EAI_)/.test(err.code) || /timeout|terminated/i.test(err.message)) {
        return new AuthQueryError('unreachable', `cannot reach ${where} for auth_query: ${err.message}`, 'check the database host and port in the databases map, and that the server is up');
      }
      return new AuthQueryError('query', `auth_query failed in ${where}: ${err.message}`, 'check auth_query; it must return (username, password) for the name bound as $1');
  }
}

/** A TLS handshake or verification failure (Node's and OpenSSL's codes), or a server refusing TLS that was required. */
function isTlsFailure(err: Error & { code?: string }): boolean {
  if (isTlsRefusal(err) || err.message === 'There was an error establishing an SSL connection') return true;
  return err.code !== undefined && /^(ERR_TLS_|ERR_SSL_)|CERT|UNABLE_TO_|SELF_SIGNED/.test(err.code);
}
