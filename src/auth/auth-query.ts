// Looks up a user's password verifier with auth_query, run as auth_user through
// node-postgres with the user name as a bound parameter ($1), never spliced into SQL.
// Results are cached briefly; concurrent logins of one user share one lookup.
import pg from 'pg';
import type { Logger } from '../log/logger.js';

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
  connectTimeoutMs: number;
}

/** Why a lookup failed, for the operator; the client sees a generic message. */
export class AuthQueryError extends Error {
  constructor(
    readonly kind: 'unreachable' | 'auth_user' | 'no_database' | 'query',
    message: string,
    readonly fix: string,
  ) {
    super(message);
  }
}

interface CacheEntry {
  password: string | null;
  expires: number;
}

export class AuthQuery {
  private readonly pools = new Map<string, pg.Pool>();
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inflight = new Map<string, Promise<string | null>>();

  constructor(
    private readonly settings: AuthQuerySettings,
    private readonly log: Logger,
  ) {}

  /** The stored password (verifier) of `user`, or null when there is no such user or it has none. */
  lookup(target: AuthTarget, user: string): Promise<string | null> {
    const key = `${target.host}\0${target.port}\0${target.dbname}\0${user}`;
    const hit = this.cache.get(key);
    if (hit && hit.expires > Date.now()) return Promise.resolve(hit.password);
    const running = this.inflight.get(key);
    if (running) return running;
    const p = this.query(target, user)
      .then((password) => {
        if (this.settings.cacheTtlMs > 0) this.cache.set(key, { password, expires: Date.now() + this.settings.cacheTtlMs });
        return password;
      })
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  /** Drops a cached verifier, e.g. after it failed to verify (the password may have changed). */
  forget(target: AuthTarget, user: string): void {
    this.cache.delete(`${target.host}\0${target.port}\0${target.dbname}\0${user}`);
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
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
        // Clients choose database names: keep no pool per name that does not exist.
        this.dropPool(target);
        this.log.info({ dbname: target.dbname }, 'auth_query: database does not exist');
        throw e;
      }
      this.log.error({ auth_user: this.settings.user, host: target.host, port: target.port, dbname: target.dbname, kind: e.kind, error: e.message }, `auth_query failed: ${e.fix}`);
      throw e;
    }
  }

  private dropPool(target: AuthTarget): void {
    const key = `${target.host}\0${target.port}\0${target.dbname}`;
    const pool = this.pools.get(key);
    this.pools.delete(key);
    pool?.end().catch(() => undefined);
  }

  private pool(target: AuthTarget): pg.Pool {
    const key = `${target.host}\0${target.port}\0${target.dbname}`;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new pg.Pool({
        host: target.host,
        port: target.port,
        database: target.dbname,
        user: this.settings.user,
        password: this.settings.password ?? undefined,
        max: 4,
        idleTimeoutMillis: 30_000,
        connectionTimeoutMillis: this.settings.connectTimeoutMs,
        application_name: 'pg-ingress auth_query',
      });
      pool.on('error', () => undefined); // an idle lookup connection dropped: the next query reconnects
      this.pools.set(key, pool);
    }
    return pool;
  }
}

function classify(err: Error & { code?: string }, authUser: string, t: AuthTarget): AuthQueryError {
  const where = `${t.host}:${t.port}/${t.dbname}`;
  switch (err.code) {
    case '28P01':
    case '28000':
      return new AuthQueryError('auth_user', `auth_user "${authUser}" could not log in to ${where}: ${err.message}`, `check auth_password / auth_password_file for auth_user "${authUser}", and that pg_hba.conf lets it connect`);
    case '3D000':
      return new AuthQueryError('no_database', `auth_user "${authUser}" could not connect to ${where}: ${err.message}`, 'if clients name databases that do not exist this is expected; otherwise set auth_dbname to a database that exists and holds the pgbouncer.get_auth function');
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
