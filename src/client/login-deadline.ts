// One deadline for the whole login (client_login_timeout), from accept to
// ReadyForQuery: TLS handshake, startup packet, the SASL exchange, the
// auth_query lookup and the wait for the login's server. PgBouncer's is one
// timer per login too; a deadline per phase would let a slow client stretch
// its login over several timeouts.
import type { Duplex } from 'node:stream';
import { fatal, SqlState } from '../protocol/pg-error.js';

export class LoginDeadline {
  private readonly timer: NodeJS.Timeout | null;
  private readonly streams: Duplex[] = [];
  /** Where the client can read an ErrorResponse now: the plain socket, later the TLS socket. */
  private speaking: Duplex | null = null;
  expired = false;

  /** @param timeoutMs 0 = no deadline (client_login_timeout = 0, as in PgBouncer) */
  constructor(timeoutMs: number, onExpire: () => void) {
    this.timer =
      timeoutMs > 0
        ? setTimeout(() => {
            this.expired = true;
            this.end();
            onExpire();
          }, timeoutMs)
        : null;
  }

  /** A stream to end at the deadline (the TCP socket, then the TLS socket over it). */
  track(stream: Duplex): void {
    this.streams.push(stream);
  }

  /** Where an expired login is told so with an ErrorResponse before the close; null while that is impossible (mid TLS handshake). */
  speaks(stream: Duplex | null): void {
    this.speaking = stream;
  }

  /** The login finished (or failed on its own): the deadline no longer applies. */
  clear(): void {
    if (this.timer) clearTimeout(this.timer);
  }

  private end(): void {
    const speaking = this.speaking;
    if (speaking && speaking.writable) {
      speaking.end(fatal(SqlState.protocolViolation, 'client_login_timeout: login not completed in time').toBuffer());
      setTimeout(() => this.destroyAll(), 200).unref();
      return;
    }
    this.destroyAll();
  }

  private destroyAll(): void {
    for (const s of this.streams) s.destroy();
  }
}
