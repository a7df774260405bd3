// The pino root logger. One child per connection carries {conn, db, user, client_addr};
// secrets never reach a log call, and the redact paths are a second line of defence.
import { pino, type Logger } from 'pino';

export type { Logger };

const REDACT = ['password', 'auth_password', '*.password', '*.auth_password', 'clientKey', 'serverKey', 'secret'];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino({ name: 'pg-ingress', level, redact: { paths: REDACT, censor: '[redacted]' }, base: { pid: process.pid } }, destination);
}

/** The logging calls connection code makes. */
export type ConnLogger = Pick<Logger, 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'isLevelEnabled'> & { child(bindings: Record<string, unknown>): ConnLogger };

/**
 * A per-connection child logger that is made on the first log call: most
 * connections never log after login, and a pino child with its bindings costs
 * about a kilobyte per idle client. Methods live on the prototype: no closure per connection.
 */
class LazyChild {
  private real: Logger | ConnLogger | null = null;

  constructor(
    private readonly parent: Logger | ConnLogger,
    private readonly bindings: Record<string, unknown>,
  ) {}

  private get log(): Logger | ConnLogger {
    if (this.real === null) {
      const parent = this.parent instanceof LazyChild ? this.parent.log : this.parent;
      this.real = parent.child(this.bindings);
    }
    return this.real;
  }

  trace(...args: Parameters<Logger['trace']>): void {
    if (this.parent.isLevelEnabled('trace')) this.log.trace(...args);
  }
  debug(...args: Parameters<Logger['debug']>): void {
    if (this.parent.isLevelEnabled('debug')) this.log.debug(...args);
  }
  info(...args: Parameters<Logger['info']>): void {
    if (this.parent.isLevelEnabled('info')) this.log.info(...args);
  }
  warn(...args: Parameters<Logger['warn']>): void {
    if (this.parent.isLevelEnabled('warn')) this.log.warn(...args);
  }
  error(...args: Parameters<Logger['error']>): void {
    if (this.parent.isLevelEnabled('error')) this.log.error(...args);
  }
  fatal(...args: Parameters<Logger['fatal']>): void {
    if (this.parent.isLevelEnabled('fatal')) this.log.fatal(...args);
  }
  isLevelEnabled(level: string): boolean {
    return this.parent.isLevelEnabled(level);
  }
  child(bindings: Record<string, unknown>): ConnLogger {
    return new LazyChild(this, bindings) as unknown as ConnLogger;
  }
}

export function lazyChild(parent: Logger | ConnLogger, bindings: Record<string, unknown>): ConnLogger {
  return new LazyChild(parent, bindings) as unknown as ConnLogger;
}
