// The connection lines PgBouncer users grep for, each behind its PgBouncer
// switch: log_connections (logins), log_disconnections (closes, with the
// reason and the connection's age) and log_pooler_errors (every error the
// pooler itself sends a client). Callers pass the configuration in force at
// the moment of the event, so a reload applies to the next line.
import type { TLSSocket } from 'node:tls';
import type { ConnLogger } from './logger.js';

export interface ConnectionLogSettings {
  log_connections: boolean;
  log_disconnections: boolean;
  log_pooler_errors: boolean;
}

/** A login that succeeded (PgBouncer writes `login attempt` before authenticating; this is written once the login is through). */
export function logLogin(settings: ConnectionLogSettings, log: ConnLogger, who: { db: string; user: string; tls: string | null }): void {
  if (settings.log_connections) log.info(`login: db=${who.db} user=${who.user} tls=${who.tls ?? 'no'}`);
}

/** A login that was refused; the reason is in the pooler error and disconnection lines. */
export function logLoginFailed(settings: ConnectionLogSettings, log: ConnLogger, who: { db: string; user: string }): void {
  if (settings.log_connections) log.info(`login failed: db=${who.db} user=${who.user}`);
}

/** @param connectedAt when the connection was accepted (epoch ms) */
export function logDisconnection(settings: ConnectionLogSettings, log: ConnLogger, reason: string, connectedAt: number, now = Date.now()): void {
  if (settings.log_disconnections) log.info(`closing because: ${reason} (age=${Math.max(0, Math.floor((now - connectedAt) / 1000))}s)`);
}

/** An ErrorResponse pg-ingress wrote to a client (not one relayed from a server). */
export function logPoolerError(settings: ConnectionLogSettings, log: ConnLogger, err: { code: string; message: string }): void {
  if (settings.log_pooler_errors) log.info({ code: err.code }, `pooler error: ${err.message}`);
}

/** How PgBouncer names a client's TLS in `login attempt`: protocol/cipher, or null without TLS. */
export function tlsDescription(socket: TLSSocket | null): string | null {
  if (!socket) return null;
  const cipher = socket.getCipher();
  return `${socket.getProtocol() ?? ''}/${cipher?.standardName ?? cipher?.name ?? ''}`;
}
