// The admin console: the virtual `pgbouncer` database, as in PgBouncer.
// Users in admin_users or stats_users log in exactly as other users do
// (auth_query, SCRAM or md5), then send simple-protocol SHOW commands that are
// answered from every worker's statistics. Nothing reaches a server.
//
// States: logging in → ready (reading Query messages) → ended. An extended
// protocol message gets one ErrorResponse and everything up to the next Sync
// is skipped, as a server does after an error.
import { randomInt } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { authenticate, checkStartup, type Startup } from '../client/login.js';
import { route } from '../client/router.js';
import { logLogin, logPoolerError, tlsDescription } from '../log/connection-events.js';
import type { ConnLogger } from '../log/logger.js';
import * as backend from '../protocol/backend.js';
import { ConnectionClosedError, type FrameQueue } from '../protocol/frame-queue.js';
import { fatal, PgError, SqlState } from '../protocol/pg-error.js';
import { decodeErrorFields } from '../pool/server-login.js';
import type { ProxyContext } from '../context.js';
import { VERSION } from '../stats/version.js';
import { runCommand, type CommandContext } from './commands.js';

/** The database name that means the console, reserved as in PgBouncer. */
export const ADMIN_DATABASE = 'pgbouncer';

const QUERY = 0x51; // 'Q'
const SYNC = 0x53; // 'S'
const TERMINATE = 0x58; // 'X'
const FUNCTION_CALL = 0x46; // 'F'
/** Parse, Bind, Describe, Execute, Close, Flush: the extended protocol. */
const EXTENDED = new Set([0x50, 0x42, 0x44, 0x45, 0x43, 0x48]);

export function isAdminLogin(startup: Startup): boolean {
  return (startup.params.get('database') || startup.params.get('user')) === ADMIN_DATABASE;
}

export interface ConsoleHooks {
  /** Authenticated and allowed: takes a logged-in slot and ends the login deadline; throws the PgError to send when there is no room. */
  onLoggedIn(): Promise<void>;
}

/** Logs a console user in and serves it until it leaves, then says why it ended (log_disconnections); throws the PgError to send if the login fails. */
export async function serveAdminConsole(proxy: ProxyContext, startup: Startup, baseLog: ConnLogger, hooks: ConsoleHooks): Promise<string> {
  const { config } = proxy;
  const { user, log } = checkStartup(proxy, startup, baseLog);
  // There is no server behind the console: users are looked up where auth_dbname points, else in the first database entry.
  const lookupIn = consoleLookupDatabase(config);
  const target = route(config, lookupIn);
  if (!target) {
    log.error({ auth_dbname: config.auth_dbname }, `admin console login: cannot look users up, database "${lookupIn}" is not in the DSN map; set auth_dbname to a database entry whose server has the auth_query function`);
    throw fatal(SqlState.connectionFailure, `pg-ingress cannot authenticate admin console users: no database entry to run auth_query in ("${lookupIn}")`, {
      hint: 'this is a proxy configuration problem; the operator finds the exact cause in the pg-ingress log',
    });
  }
  const { frames } = await authenticate(proxy, startup, user, ADMIN_DATABASE, target, log);
  // After authentication, as Postgres checks CONNECT privilege: nobody learns who is an admin without a password.
  const isAdmin = config.admin_users.includes(user);
  if (!isAdmin && !config.stats_users.includes(user)) {
    throw fatal(SqlState.insufficientPrivilege, `permission denied for database "${ADMIN_DATABASE}"`, {
      detail: `user "${user}" is in neither admin_users nor stats_users`,
    });
  }
  await hooks.onLoggedIn();
  const socket = startup.socket;
  socket.write(welcome(startup.params.get('application_name') ?? ''));
  log.debug({ admin: isAdmin }, 'admin console login');
  logLogin(proxy.config, log, { db: ADMIN_DATABASE, user, tls: tlsDescription(startup.tls) });
  proxy.adminConsoles++;
  try {
    return await serve(socket, frames, { get config() { return proxy.config; }, operator: proxy.operator, isAdmin, stats: () => proxy.stats.collect(), statsPeriodSeconds: config.stats_period }, (err) => logPoolerError(proxy.config, log, err), log);
  } finally {
    proxy.adminConsoles--;
  }
}

/**
 * Where console users are looked up: auth_dbname, else the first database
 * entry (PgBouncer needs auth_dbname; the shipped configuration then works as
 * it is), else "postgres" through the '*' entry.
 */
export function consoleLookupDatabase(config: ProxyContext['config']): string {
  if (config.auth_dbname !== null) return config.auth_dbname;
  return Object.keys(config.databases).find((name) => name !== '*') ?? 'postgres';
}

/** ParameterStatus as PgBouncer's console reports them, a BackendKeyData (cancel does nothing here), ReadyForQuery. */
function welcome(applicationName: string): Buffer {
  const params: [string, string][] = [
    ['server_version', `${VERSION}/pg-ingress`],
    ['server_encoding', 'UTF8'],
    ['client_encoding', 'UTF8'],
    ['DateStyle', 'ISO'],
    ['TimeZone', 'UTC'],
    ['standard_conforming_strings', 'on'],
    ['integer_datetimes', 'on'],
    ['application_name', applicationName],
  ];
  return Buffer.concat([
    ...params.map(([n, v]) => backend.parameterStatus(n, v)),
    backend.backendKeyData(randomInt(1, 0x7fffffff), randomInt(1, 0x7fffffff)),
    backend.readyForQuery('I'),
  ]);
}

/** The errors the console sends, for log_pooler_errors. */
type ToldError = (err: { code: string; message: string }) => void;

/** @returns why the console connection ended, in PgBouncer's words */
async function serve(socket: Duplex, frames: FrameQueue, ctx: CommandContext, told: ToldError, log: ConnLogger): Promise<string> {
  let skippingToSync = false;
  let reason = 'client close request';
  for (;;) {
    let frame;
    try {
      frame = await frames.next();
    } catch (err) {
      reason = err instanceof ConnectionClosedError ? 'client unexpected eof' : (err as Error).message;
      if (!(err instanceof ConnectionClosedError) && socket.writable) socket.end(tell(fatal(SqlState.protocolViolation, (err as Error).message), told));
      break;
    }
    if (frame.type === TERMINATE) break;
    if (frame.type === QUERY) {
      skippingToSync = false;
      const after: Array<() => void> = [];
      const out = await answer(frame.body, { ...ctx, afterAnswer: (action) => after.push(action) }, log);
      const last = out.at(-1);
      if (last?.[0] === 0x45) told(errorOf(last)); // 'E': the statement that failed
      socket.write(Buffer.concat([...out, backend.readyForQuery('I')]), () => {
        for (const action of after) action();
      });
    } else if (EXTENDED.has(frame.type) || frame.type === FUNCTION_CALL) {
      if (!skippingToSync) {
        socket.write(tell(new PgError({ severity: 'ERROR', code: SqlState.featureNotSupported, message: 'the admin console supports only the simple query protocol', hint: 'send the command as a simple Query (psql does; in node-postgres, call query() without parameters)' }), told));
      }
      // FunctionCall stands alone; the extended protocol waits for its Sync.
      if (frame.type === FUNCTION_CALL) socket.write(backend.readyForQuery('I'));
      else skippingToSync = true;
    } else if (frame.type === SYNC) {
      skippingToSync = false;
      socket.write(backend.readyForQuery('I'));
    } else {
      const err = fatal(SqlState.protocolViolation, `unexpected message type 0x${frame.type.toString(16)} on the admin console`);
      reason = err.message;
      socket.end(tell(err, told));
      break;
    }
  }
  frames.detach();
  socket.end();
  return reason;
}

function tell(err: PgError, told: ToldError): Buffer {
  told(err);
  return err.toBuffer();
}

/** The code and message of an ErrorResponse a command answered with. */
function errorOf(response: Buffer): { code: string; message: string } {
  const fields = decodeErrorFields(response.subarray(5, 1 + response.readInt32BE(1)));
  return { code: fields.get('C') ?? '', message: fields.get('M') ?? '' };
}

/** Runs each statement of a simple Query; the first error ends the string, as in Postgres. One answer per statement run. */
async function answer(body: Buffer, ctx: CommandContext, log: ConnLogger): Promise<Buffer[]> {
  const end = body.indexOf(0);
  const sql = body.toString('utf8', 0, end < 0 ? body.length : end);
  const statements = splitStatements(sql).filter((s, i, all) => s.trim() !== '' || (all.length === 1 && i === 0));
  const parts: Buffer[] = [];
  for (const statement of statements) {
    let out: Buffer;
    try {
      out = await runCommand(statement, ctx);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'admin console command failed');
      out = new PgError({ severity: 'ERROR', code: SqlState.internalError, message: `command failed: ${(err as Error).message}` }).toBuffer();
    }
    parts.push(out);
    if (out[0] === 0x45) break; // 'E'
  }
  return parts;
}

/** The statements of a simple Query: split at `;` outside '…' and "…" (SET server_reset_query = 'DISCARD ALL; SELECT 1' is one). */
export function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let quote: string | null = null;
  let start = 0;
  for (let i = 0; i < sql.length; i++) {
    const c = sql[i];
    if (quote !== null) {
      if (c === quote) quote = null; // a doubled quote closes and reopens: the same outcome
    } else if (c === "'" || c === '"') quote = c;
    else if (c === ';') {
      out.push(sql.slice(start, i));
      start = i + 1;
    }
  }
  out.push(sql.slice(start));
  return out;
}
