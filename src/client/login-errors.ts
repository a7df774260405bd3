// What a client is told when its login (or the wait for a server) went wrong:
// every failure mapped to a Postgres ErrorResponse, or to a silent close.
// Its own module so that the session can use it without importing the login.
import { ConnectionClosedError, FrameTimeoutError } from '../protocol/frame-queue.js';
import { fatal, PgError, SqlState } from '../protocol/pg-error.js';
import { ServerLoginError } from '../pool/server-login.js';
import { ServerConnectError } from '../pool/server.js';
import { SilentClose } from './handshake.js';

/** Maps whatever went wrong to what the client sees. */
export function translate(err: unknown): Error {
  if (err instanceof PgError || err instanceof SilentClose) return err;
  if (err instanceof ConnectionClosedError) return new SilentClose('client closed during login');
  if (err instanceof FrameTimeoutError) return fatal(SqlState.protocolViolation, 'client_login_timeout: login not completed in time');
  if (err instanceof ServerLoginError) {
    const f = err.fields;
    if (f?.get('C')) return new PgError({ severity: 'FATAL', code: f.get('C')!, message: f.get('M') ?? err.message, detail: f.get('D'), hint: f.get('H') });
    return fatal(SqlState.connectionFailure, `server login failed: ${err.message}`);
  }
  if (err instanceof ServerConnectError) return fatal(SqlState.connectionFailure, 'could not connect to the database server', { detail: err.message });
  return fatal(SqlState.internalError, `internal error during login: ${(err as Error).message}`);
}
