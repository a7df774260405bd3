// A client's way from StartupMessage to ReadyForQuery: route the database,
// look the user up with auth_query, authenticate, get a server, enforce the
// superuser policy, apply the client's parameters, and say welcome.
import type { Duplex } from 'node:stream';
import { AuthQueryError, authLoginFor } from '../auth/auth-query.js';
import { authenticateClient } from '../auth/client-auth.js';
import { clientAddress } from '../auth/throttle.js';
import { authFileVerifier } from '../auth/userlist.js';
import { parseVerifier } from '../auth/verifier.js';
import type { PoolMode } from '../config/index.js';
import { lazyChild, type ConnLogger } from '../log/logger.js';
import * as backend from '../protocol/backend.js';
import { FrameQueue } from '../protocol/frame-queue.js';
import { FrameLengthError, FrameTooLargeError } from '../protocol/framer.js';
import { fatal, PgError, SqlState } from '../protocol/pg-error.js';
import type { Pool } from '../pool/pool.js';
import { poolSettings } from '../pool/settings.js';
import type { ServerCredentials } from '../pool/server-login.js';
import type { ServerConnection } from '../pool/server.js';
import type { ProxyContext } from '../context.js';
import { cachedLoginParameters, clientParameters, parameterSync, reportedParameters } from './parameters.js';
import { route, type Route } from './router.js';
import type { Negotiated } from './handshake.js';
import { translate } from './login-errors.js';

/** Login-phase messages are small; the real limit applies after login. */
const LOGIN_MAX_MESSAGE = 16 * 1024;

export interface LoggedIn {
  mode: PoolMode;
  socket: Duplex;
  /** Bytes the client sent after the login's last message, in order, for the relay. */
  pending: Buffer;
  pool: Pool;
  /** The login's server; null when the pool's cached welcome answered the login (transaction/statement mode). */
  server: ServerConnection | null;
  /** The ParameterStatus values to welcome the client with. */
  reported: ReadonlyMap<string, string>;
  params: Map<string, string>;
  log: ConnLogger;
}

export type Startup = Extract<Negotiated, { kind: 'startup' }>;

export async function login(proxy: ProxyContext, startup: Startup, baseLog: ConnLogger): Promise<LoggedIn> {
  const { config } = proxy;
  const { socket } = startup;
  const { user, database, wanted, log } = checkStartup(proxy, startup, baseLog);
  const target = route(config, database);
  if (!target) throw fatal(SqlState.invalidCatalogName, `database "${database}" does not exist`);
  if (proxy.pools.isDisabled(database)) {
    throw fatal(SqlState.objectNotInPrerequisiteState, `database "${database}" is not currently accepting connections`, { detail: 'DISABLE on the pg-ingress admin console; ENABLE lets clients in again' });
  }
  const { frames, credentials } = await authenticate(proxy, startup, user, database, target, log);

  // A user's pool_mode wins over its database's, as in PgBouncer.
  const userEntry = config.users[user];
  const address = { host: target.host, port: target.port, dbname: target.dbname, user };
  const pool = proxy.pools.get(database, address, poolSettings(config, target.entry, user, userEntry?.pool_mode ?? target.poolMode));
  // The pool's mode, not the configuration's: after a reload that changed it, the pool switches once its clients have left.
  const mode = pool.mode;
  pool.setCredentials(credentials);
  // Transaction and statement pooling: a login the pool's last server login can answer takes no server,
  // so it never waits behind busy clients (PgBouncer's cached welcome). The first query waits as any does.
  if (mode !== 'session' && pool.welcome) {
    const params = cachedLoginParameters(proxy.parameters, wanted, pool.welcome.params);
    if (params) {
      const refusal = superuserRefusal(config.allow_superuser, user, pool.welcome.superuser, pool.welcome.superuserMember);
      if (refusal) throw refusal;
      return { mode, socket, pending: frames.detach(), pool, server: null, reported: reportedParameters(pool.welcome.params, params), params, log };
    }
  }
  let server: ServerConnection;
  let params: Map<string, string>;
  try {
    const waitStart = performance.now();
    server = await pool.acquire();
    pool.stats.waitTimeMs += performance.now() - waitStart;
  } catch (err) {
    throw translate(err);
  }
  try {
    const refusal = superuserRefusal(config.allow_superuser, user, server.params.get('is_superuser') === 'on', server.superuserMember === true);
    if (refusal) {
      pool.discard(server);
      throw refusal;
    }
    params = clientParameters(proxy.parameters, wanted, server);
    const sync = parameterSync(proxy.parameters, params, server);
    if (sync.sql) await server.runInternal(sync.sql);
    sync.done();
  } catch (err) {
    if (!server.closed && server.isClean) pool.release(server, true);
    else if (!server.closed) pool.discard(server);
    throw translate(err);
  }
  return { mode, socket, pending: frames.detach(), pool, server, reported: server.params, params, log };
}

/** The superuser policy (allow_superuser off): a superuser, or a member of a superuser role (SET ROLE makes it one), is refused. */
function superuserRefusal(allowed: boolean, user: string, superuser: boolean, member: boolean): PgError | null {
  if (allowed) return null;
  if (superuser) {
    return fatal(SqlState.insufficientPrivilege, `superuser "${user}" may not log in through pg-ingress`, {
      detail: 'superuser logins through the internet-facing pooler are refused by policy (allow_superuser is off)',
      hint: 'connect to the database directly from inside the cluster (for example `kubectl run psql`), or use a non-superuser role',
    });
  }
  if (member) {
    return fatal(SqlState.insufficientPrivilege, `role "${user}" may not log in through pg-ingress: it is a member of a superuser role`, {
      detail: 'a member of a superuser role becomes a superuser with SET ROLE; such logins through the internet-facing pooler are refused by policy (allow_superuser is off)',
      hint: 'log in with a role that is not a member of a superuser role, or connect directly from inside the cluster',
    });
  }
  return null;
}

/** What a StartupMessage asks for, once it passed the checks every login goes through. */
export interface StartupRequest {
  user: string;
  database: string;
  wanted: Exclude<ReturnType<ProxyContext['parameters']['fromStartup']>, PgError>;
  log: ConnLogger;
}

/** TLS policy, user, replication and startup parameters; answers a newer protocol version as Postgres does. */
export function checkStartup(proxy: ProxyContext, startup: Startup, baseLog: ConnLogger): StartupRequest {
  const { config } = proxy;
  if (!startup.tls && config.client_tls_sslmode === 'require') {
    throw fatal(SqlState.invalidAuthorization, 'SSL required', { hint: 'connect with sslmode=require (or verify-full)' });
  }
  const user = startup.params.get('user') ?? '';
  if (user === '') throw fatal(SqlState.invalidAuthorization, 'no PostgreSQL user name specified in startup packet');
  const database = startup.params.get('database') || user;
  const replication = startup.params.get('replication');
  if (replication !== undefined && !['false', 'off', 'no', '0'].includes(replication.toLowerCase())) {
    throw fatal(SqlState.featureNotSupported, 'replication connections are not supported by pg-ingress', {
      hint: 'connect to the database server directly for replication',
    });
  }
  const wanted = proxy.parameters.fromStartup(startup.params);
  if (wanted instanceof PgError) throw wanted;
  const log = lazyChild(baseLog, { db: database, user });

  // Postgres answers a newer minor version or _pq_ options before authenticating.
  if (startup.minor > 0 || startup.protocolOptions.length > 0) startup.socket.write(backend.negotiateProtocolVersion(0, startup.protocolOptions));
  return { user, database, wanted, log };
}

/**
 * Looks the user up with auth_query on `target`'s server and runs the
 * authentication exchange, ending with AuthenticationOk. Resolves with what an
 * upstream login needs and the client's frame queue.
 */
export async function authenticate(proxy: ProxyContext, startup: Startup, user: string, database: string, target: Route, log: ConnLogger): Promise<{ frames: FrameQueue; credentials: ServerCredentials }> {
  const { socket } = startup;
  // Before any lookup: a throttled address costs nothing upstream.
  const address = clientAddress(socket);
  const throttled = proxy.authThrottle.refusal(address, database);
  if (throttled) throw throttled;
  const write = (buf: Buffer): void => void socket.write(buf);
  const frames = new FrameQueue(socket, LOGIN_MAX_MESSAGE, startup.rest);
  const timeoutMs = 0; // the login deadline (login-deadline.ts) bounds the whole exchange
  const authTarget = { host: target.host, port: target.port, ports: target.entry.ports, dbname: target.authDbname };
  const authLogin = authLoginFor(proxy.config, target.entry);
  // A user auth_file lists with a verifier authenticates from it, as in PgBouncer.
  const listed = authFileVerifier(proxy.config.auth_file_passwords, user);
  let password: string | null;
  try {
    password = listed ?? (await proxy.authQuery.lookup(authTarget, user, authLogin));
  } catch (err) {
    if (err instanceof AuthQueryError && err.kind === 'no_database' && target.authDbname === target.dbname) {
      throw fatal(SqlState.invalidCatalogName, `database "${database}" does not exist`);
    }
    if (err instanceof AuthQueryError && err.kind === 'busy') {
      throw fatal(SqlState.tooManyConnections, 'too many logins in progress', { detail: 'pg-ingress is looking up as many users as auth_max_concurrent_lookups allows', hint: 'try again in a moment' });
    }
    if (err instanceof AuthQueryError && err.kind === 'tls') {
      throw fatal(SqlState.connectionFailure, `could not connect to the database server for "${database}": TLS to it failed`, { detail: `server_tls_sslmode is ${proxy.config.server_tls_sslmode}; the pg-ingress log says why the server's certificate was refused` });
    }
    if (err instanceof AuthQueryError && err.kind === 'unreachable') {
      throw fatal(SqlState.connectionFailure, `could not connect to the database server for "${database}"`, { detail: 'pg-ingress could not reach the upstream server to look up the user' });
    }
    throw fatal(SqlState.connectionFailure, 'pg-ingress cannot authenticate users right now: its auth_query lookup failed', {
      hint: 'this is a proxy configuration problem; the operator finds the exact cause in the pg-ingress log',
    });
  }
  const verifier = parseVerifier(password);
  if (password !== null && verifier === null) log.warn('the stored password of this user is not a SCRAM or md5 verifier; the login is refused');

  let credentials: ServerCredentials;
  try {
    const channelBinding = startup.endpointHash; // the certificate this handshake used, even if it rotated since
    credentials = await authenticateClient({ write, frames, timeoutMs }, user, verifier, channelBinding);
  } catch (err) {
    if (err instanceof PgError && err.code === SqlState.invalidPassword) {
      proxy.authQuery.forget(authTarget, user, authLogin);
      proxy.authThrottle.recordFailure(address, database);
    }
    if (err instanceof FrameTooLargeError || err instanceof FrameLengthError) throw fatal(SqlState.protocolViolation, `invalid message during authentication: ${err.message}`);
    throw translate(err);
  }
  write(backend.authenticationOk());
  return { frames, credentials };
}

/** Sends the rest of the welcome: parameters, our cancel key, ReadyForQuery. */
export function welcome(socket: Duplex, reported: ReadonlyMap<string, string>, keys: { processId: number; secretKey: number }): void {
  const parts: Buffer[] = [];
  for (const [name, value] of reported) parts.push(backend.parameterStatus(name, value));
  parts.push(backend.backendKeyData(keys.processId, keys.secretKey), backend.readyForQuery('I'));
  socket.write(Buffer.concat(parts));
}
