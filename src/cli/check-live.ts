// `pg-ingress check --live`: tries what pg-ingress will do at a client's login,
// before any client comes. For every database entry it connects where
// auth_query runs, as auth_user, with the same login (authLoginFor) and the same
// TLS (server_tls_*, pgSslOptions) as src/auth/auth-query.ts, runs auth_query for
// a user that cannot exist and for --user, and says in plain words what is
// missing and how to fix it; then it checks the client certificate.
// Verifiers and passwords are never printed: only their kind.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Config } from '../config/schema.js';
import { secretKind } from '../config/userlist.js';
import { authLoginFor, type AuthLogin } from '../auth/auth-query.js';
import { parseHosts } from '../pool/hosts.js';
import { isTlsRefusal, pgSslOptions, ServerTlsError } from '../pool/server-tls.js';
import { checkClientCertificate } from './check-certificate.js';
import { CheckReport } from './check-report.js';

export interface LiveCheckOptions {
  /** A user auth_query must find, with a verifier (--user); null checks only a user that does not exist. */
  user: string | null;
  write: (line: string) => void;
  now?: Date;
}

/** Runs every check, one line each; true when none failed. */
export async function checkLive(config: Config, options: LiveCheckOptions): Promise<boolean> {
  const report = new CheckReport(options.write);
  for (const target of lookupTargets(config, report)) await checkLookup(target, options.user, report);
  checkClientCertificate(config, report, options.now);
  return report.passed;
}

/** Where one lookup runs: one host of an entry, the database auth_query runs in, and who runs it. */
interface LookupTarget {
  /** The database entries that look users up here. */
  entries: string[];
  host: string;
  port: number;
  dbname: string;
  login: AuthLogin;
}

/**
 * Every distinct place auth_query runs, as the router picks it at a login:
 * the entry's host, in the entry's auth_dbname, else the global one, else
 * the entry's own database. A `*` entry looks up in the database a client
 * names, so it is checked only where auth_dbname fixes that database.
 */
function lookupTargets(config: Config, report: CheckReport): LookupTarget[] {
  const targets = new Map<string, LookupTarget>();
  for (const [name, entry] of Object.entries(config.databases)) {
    let dbname: string;
    let host: string;
    if (name === '*') {
      const authDbname = entry.auth_dbname ?? config.auth_dbname;
      if (authDbname === null) {
        report.skip('"*": users are looked up in whichever database a client names; set auth_dbname (or add entries for the databases) to check the lookup');
        continue;
      }
      dbname = authDbname;
      host = entry.host.replaceAll('{db}', authDbname);
    } else {
      dbname = entry.auth_dbname ?? config.auth_dbname ?? entry.dbname ?? name;
      host = entry.host.replaceAll('{db}', name);
    }
    const login = authLoginFor(config, entry);
    for (const one of parseHosts(host, entry.ports)) {
      const key = JSON.stringify([one.host, one.port, dbname, login.user, login.query]);
      const seen = targets.get(key);
      if (seen) seen.entries.push(name);
      else targets.set(key, { entries: [name], host: one.host, port: one.port, dbname, login });
    }
  }
  return [...targets.values()];
}

async function checkLookup(t: LookupTarget, user: string | null, report: CheckReport): Promise<void> {
  const where = `${t.entries.map((e) => JSON.stringify(e)).join(', ')}: ${t.host}:${t.port}/${t.dbname}`;
  let client: { client: pg.Client; tls: boolean };
  try {
    client = await connect(t);
  } catch (err) {
    report.fail(`${where}: cannot connect as auth_user "${t.login.user}": ${connectFailure(err as PgError, t)}`);
    return;
  }
  try {
    report.ok(`${where}: connected as auth_user "${t.login.user}" (${client.tls ? 'TLS' : 'no TLS'})`);
    const nobody = `pg_ingress_check_${randomBytes(6).toString('hex')}`;
    const absent = await lookup(client.client, t, nobody);
    if (typeof absent === 'string') {
      report.fail(`${where}: auth_query: ${absent}`);
      return;
    }
    if (absent.password !== null) report.fail(`${where}: auth_query returns a verifier for a user that does not exist: it must select only the user bound as $1`);
    else report.ok(`${where}: auth_query for a user that does not exist returns no row`);
    if (user === null) {
      report.skip(`${where}: no --user given: name a user with --user NAME to see that its verifier is found`);
      return;
    }
    const found = await lookup(client.client, t, user);
    if (typeof found === 'string') report.fail(`${where}: auth_query for "${user}": ${found}`);
    else if (!found.row) report.fail(`${where}: auth_query finds no row for "${user}": no such role, it cannot log in, or the lookup leaves it out (as --exclude-superusers does for superusers)`);
    else if (found.password === null) report.fail(`${where}: auth_query finds "${user}" without a password: set one (ALTER ROLE ... PASSWORD) or it cannot log in through pg-ingress`);
    else report.ok(`${where}: auth_query finds "${user}" with ${VERIFIER_WORDS[secretKind(found.password)]}`);
  } finally {
    await client.client.end().catch(() => undefined);
  }
}

const VERIFIER_WORDS = { scram: 'a SCRAM-SHA-256 verifier', md5: 'an md5 hash', plaintext: 'a password stored neither as SCRAM nor as md5' } as const;

type PgError = Error & { code?: string };

/** One connection as AuthQuery makes them; under prefer/allow a server that refuses TLS is asked again in plaintext. */
async function connect(t: LookupTarget): Promise<{ client: pg.Client; tls: boolean }> {
  const ssl = t.login.tls ? pgSslOptions(t.login.tls, t.host) : false;
  try {
    return { client: await open(t, ssl), tls: ssl !== false };
  } catch (err) {
    const mode = t.login.tls?.sslmode;
    if ((mode === 'prefer' || mode === 'allow') && isTlsRefusal(err as Error)) return { client: await open(t, false), tls: false };
    throw err;
  }
}

const TIMEOUT_MS = 5000;

async function open(t: LookupTarget, ssl: ReturnType<typeof pgSslOptions>): Promise<pg.Client> {
  const client = new pg.Client({
    host: t.host,
    port: t.port,
    database: t.dbname,
    user: t.login.user,
    password: t.login.password ?? undefined,
    // Explicit: otherwise node-postgres would read PGSSLMODE from the environment.
    ssl,
    connectionTimeoutMillis: TIMEOUT_MS,
    query_timeout: TIMEOUT_MS,
    application_name: 'pg-ingress check',
  });
  client.on('error', () => undefined); // the server went away after the checks' last query
  try {
    await client.connect();
    return client;
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
}

/** The first row's password (null when there is no row or it is NULL), or what is wrong, in words. */
async function lookup(client: pg.Client, t: LookupTarget, user: string): Promise<{ row: boolean; password: string | null } | string> {
  let result: pg.QueryResult<Record<string, unknown>>;
  try {
    result = await client.query<Record<string, unknown>>(t.login.query, [user]);
  } catch (err) {
    return queryFailure(err as PgError, t);
  }
  // The lookup reads the verifier from the column named password (src/auth/auth-query.ts).
  const columns = result.fields.map((f) => f.name);
  if (!columns.includes('password')) {
    return `returns the wrong columns (${columns.join(', ') || 'none'}): pg-ingress reads the verifier from a column named "password", as in (username, password)`;
  }
  const row = result.rows[0];
  const password = row?.password;
  if (password !== null && password !== undefined && typeof password !== 'string') return 'returns a password column that is not text';
  return { row: row !== undefined, password: password ?? null };
}

/** The `init-sql` command that creates the lookup in this database, and how to apply it. */
function initSqlFix(t: LookupTarget): string {
  const user = t.login.user === 'pgbouncer' ? '' : ` --auth-user ${t.login.user}`;
  return `pg-ingress init-sql${user} --database ${t.dbname} | psql -h ${t.host} -p ${t.port} -U postgres -d ${t.dbname} (as a superuser)`;
}

function connectFailure(err: PgError, t: LookupTarget): string {
  const user = t.login.user;
  if (err instanceof ServerTlsError) return `${err.message}`;
  switch (err.code) {
    case '28P01':
      return t.login.password === null
        ? `the server asks for a password and none is configured for "${user}": set auth_password (or auth_password_file, PG_INGRESS_AUTH_PASSWORD)`
        : `the password is wrong (or the role "${user}" does not exist): auth_password must be the password of "${user}" (ALTER ROLE ${user} PASSWORD …, or fix auth_password / auth_password_file)`;
    case '28000':
      if (/not permitted to log in/.test(err.message)) return `the role "${user}" can't log in (NOLOGIN): ALTER ROLE ${user} LOGIN (${err.message})`;
      return `the server refused the login: ${err.message} (check pg_hba.conf for "${user}" from this host)`;
    case '3D000':
      return `the database "${t.dbname}" does not exist on ${t.host}:${t.port}: create it, or set auth_dbname to a database that exists and holds pgbouncer.get_auth`;
    case '57P03':
      return `the server is starting up or shutting down: ${err.message}`;
    case '53300':
      return `the server has no connection slot left: ${err.message}`;
    case 'ECONNREFUSED':
      return `the host is unreachable: connection refused at ${t.host}:${t.port} (is the server up, and are host and port right?)`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `the host is unreachable: the name "${t.host}" does not resolve`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ETIMEDOUT':
      return `the host is unreachable: ${t.host}:${t.port} (${err.code})`;
  }
  if (/client password must be/.test(err.message)) return `the server asks for a password and none is configured for "${user}": set auth_password (or auth_password_file, PG_INGRESS_AUTH_PASSWORD)`;
  if (/timeout/i.test(err.message)) return `the host is unreachable: no answer from ${t.host}:${t.port} within ${TIMEOUT_MS / 1000} s`;
  if (isTlsRefusal(err)) return `the server does not offer TLS, which server_tls_sslmode ${t.login.tls?.sslmode ?? ''} requires`;
  if (err.code !== undefined && /^(ERR_TLS_|ERR_SSL_)|CERT|UNABLE_TO_|SELF_SIGNED/.test(err.code)) {
    return `TLS failed: ${err.message} (check server_tls_sslmode and server_tls_ca_file against the server's certificate; verify-full also checks the host name)`;
  }
  return err.message;
}

function queryFailure(err: PgError, t: LookupTarget): string {
  const ours = /pgbouncer\.get_auth/i.test(t.login.query);
  switch (err.code) {
    case '42883':
    case '3F000':
      return ours ? `the function pgbouncer.get_auth is missing in "${t.dbname}" (${err.message}): fix with ${initSqlFix(t)}` : `auth_query names something that does not exist: ${err.message}`;
    case '42501':
      return `permission denied (${err.message}): "${t.login.user}" needs USAGE on schema pgbouncer and EXECUTE on pgbouncer.get_auth(text), through membership in the auth role: fix with ${initSqlFix(t)}, and GRANT pgbouncer_auth TO ${t.login.user} if the role existed before`;
    case '42P01':
      return `auth_query reads a table that does not exist: ${err.message}`;
    case '42601':
      return `auth_query is not valid SQL: ${err.message}`;
    case '08P01':
      return `auth_query must take the user name as its one parameter, $1: ${err.message}`;
  }
  if (/timeout/i.test(err.message)) return `auth_query did not answer within ${TIMEOUT_MS / 1000} s`;
  return err.message;
}
