// Looks up a user's password verifier with auth_query, run as auth_user through
// node-postgres with the user name as a bound parameter ($1), never spliced into SQL.
// Everything here is keyed by names strangers choose, so every part is bounded:
// verifiers are cached in an LRU of auth_cache_size entries ("no such user"
// only briefly), a database that does not exist is remembered for a few
// seconds per target, at most auth_max_concurrent_lookups lookups run at once
// (a bounded FIFO waits behind them, the rest are refused), and the per-target
// pg.Pool map has a cap. Concurrent logins of one user share one lookup.
import pg from 'pg';
import type { Logger } from '../log/logger.js';
import { processCounters } from '../stats/process-counters.js';
import { ExpiringLru } from './expiring-lru.js';

export interface AuthTarget {
  host: string;
  port: number;
  dbname: string;
}

export interface AuthQuerySettings {
  user: string;
  password: string | null;
  query: string;
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
    readonly kind: 'unreachable' | 'auth_user' | 'no_database' | 'query' | 'busy',
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

export class AuthQuery {
  private readonly pools = new Map<string, pg.Pool>();
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

  /** The stored password (verifier) of `user`, or null when there is no such user or it has none. */
  lookup(target: AuthTarget, user: string): Promise<string | null> {
    const key = `${targetKey(target)}\0${user}`;
    const hit = this.cache.get(key);
    if (hit !== undefined) return Promise.resolve(hit);
    if (this.missingDatabases.get(targetKey(target))) return Promise.reject(noDatabase(this.settings.user, target, 'remembered from a lookup moments ago'));
    const running = this.inflight.get(key);
    if (running) return running;
    const p = this.limiter
      .run(() => this.query(target, user))
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
  forget(target: AuthTarget, user: string): void {
    this.cache.delete(`${targetKey(target)}\0${user}`);
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    this.cache.clear();
    this.missingDatabases.clear();
    await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
  }

  private async query(target: AuthTarget, user: string): Promise<string | null> {
    try {
      const result = await this.pool(target).query<{ password: string | null }>(this.settings.query, [user]);
      const row = result.rows[0];
      return row?.password ?? null;
    } catch (err) {
      const e = classify(err as Error & { code?: string }, this.settings.user, target);
      if (e.kind === 'no_database') {
        // Clients choose database names: keep no pool per name that does not exist, and ask again only after a while.
        this.dropPool(target);
        this.missingDatabases.set(targetKey(target), true, MISSING_DATABASE_TTL_MS);
        this.log.info({ dbname: target.dbname }, 'auth_query: database does not exist');
        throw e;
      }
      this.log.error({ auth_user: this.settings.user, host: target.host, port: target.port, dbname: target.dbname, kind: e.kind, error: e.message }, `auth_query failed: ${e.fix}`);
      throw e;
    }
  }

  private dropPool(target: AuthTarget): void {
    const key = targetKey(target);
    const pool = this.pools.get(key);
    this.pools.delete(key);
    pool?.end().catch(() => undefined);
  }

  private pool(target: AuthTarget): pg.Pool {
    const key = targetKey(target);
    let pool = this.pools.get(key);
    if (pool) {
      // Most recently used last, so the first key is the one to end when the map is full.
      this.pools.delete(key);
      this.pools.set(key, pool);
      return pool;
    }
    pool = new pg.Pool({
      host: target.host,
      port: target.port,
      database: target.dbname,
      user: this.settings.user,
      password: this.settings.password ?? undefined,
      max: 4,
      idleTimeoutMillis: 30_000,
      connectionTimeoutMillis: this.settings.connectTimeoutMs,
      // A hung lookup must give its slot back.
      query_timeout: this.settings.connectTimeoutMs,
      application_name: 'pg-ingress auth_query',
    });
    pool.on('error', () => undefined); // an idle lookup connection dropped: the next query reconnects
    this.pools.set(key, pool);
    while (this.pools.size > MAX_AUTH_POOLS) {
      const oldest = this.pools.keys().next().value!;
      // end() lets a query still running on it finish.
      this.pools.get(oldest)?.end().catch(() => undefined);
      this.pools.delete(oldest);
    }
    return pool;
  }
}

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
      if (err.code === undefined || /^(ECONN|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EAI_)/.test(err.code) || /timeout|terminated/i.test(err.message)) {
        return new AuthQueryError('unreachable', `cannot reach ${where} for auth_query: ${err.message}`, 'check the database host and port in the databases map, and that the server is up');
      }
      return new AuthQueryError('query', `auth_query failed in ${where}: ${err.message}`, 'check auth_query; it must return (username, password) for the name bound as $1');
  }
}
