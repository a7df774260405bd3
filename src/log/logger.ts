// The pino root logger. One child per connection carries {conn, db, user, client_addr};
// secrets never reach a log call, and the redact paths are a second line of defence
// (they apply before either format is written).
//
// Two formats: JSON lines (for a log collector), or readable text for a person at a
// terminal. Text goes through pino-pretty in this thread, writing synchronously, so
// nothing is lost when the process exits (a transport would run in a worker thread).
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

const REDACT = ['password', 'auth_password', '*.password', '*.auth_password', 'clientKey', 'serverKey', 'secret'];

export type LogFormat = 'text' | 'json';
export type LogLevelName = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

/** log_format `auto`: text for a person at a terminal, JSON for everything else. */
export function logFormat(setting: LogFormat | 'auto', stdoutIsTerminal = process.stdout.isTTY === true): LogFormat {
  return setting === 'auto' ? (stdoutIsTerminal ? 'text' : 'json') : setting;
}

/** @param destination where lines go (default stdout) */
export function createLogger(level: string, destination?: pino.DestinationStream, format: LogFormat = 'json'): Logger {
  const options = { name: 'pg-ingress', level, redact: { paths: REDACT, censor: '[redacted]' }, base: { pid: process.pid } };
  if (format === 'json') return pino(options, destination);
  // pino-pretty opens a block below the line for the error key; ours carry `err` messages, kept on the line.
  return pino({ ...options, errorKey: 'exception' }, textStream(destination));
}

/**
 * Changes the level at run time (reload). Children follow their parent's level
 * until one is given a level of its own, which nothing here does: the children
 * and lazyChild()ren made before the change follow it.
 */
export function setLogLevel(log: Logger, level: LogLevelName): void {
  log.level = level;
}

/** Keys text lines leave out: the prefix shows them, they only clutter a terminal (pid, hostname, name), or the message says it all (the log_stats averages). */
const NOT_IN_TEXT = 'pid,hostname,name,conn,client_addr,client_port,db,user,averages';

function textStream(destination: pino.DestinationStream | undefined): pino.DestinationStream {
  const toStdout = destination === undefined;
  return pretty({
    destination: destination ?? 1,
    sync: true,
    colorize: toStdout && process.stdout.isTTY === true,
    singleLine: true,
    errorLikeObjectKeys: [], // and pino adds its errorKey: only an Error object logged whole gets a block
    translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l Z',
    ignore: NOT_IN_TEXT,
    messageFormat: (line, messageKey) => connectionPrefix(line) + (line[messageKey] === undefined ? '' : printable(line[messageKey])),
  });
}

/**
 * PgBouncer's prefix for a connection's lines, `C-<conn>: db/user@addr:port `
 * (`(nodb)`/`(nouser)` before they are known); nothing for other lines.
 */
export function connectionPrefix(line: Record<string, unknown>): string {
  if (line.conn === undefined) return '';
  const db = line.db === undefined ? '(nodb)' : printable(line.db);
  const user = line.user === undefined ? '(nouser)' : printable(line.user);
  const addr = printable(line.client_addr ?? '');
  const host = addr.includes(':') ? `[${addr}]` : addr;
  const port = line.client_port === undefined ? '' : `:${printable(line.client_port)}`;
  return `C-${printable(line.conn)}: ${db}/${user}@${host}${port} `;
}

const ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** Control characters escaped: a user or database name with a newline must not forge a second line. */
function printable(v: unknown): string {
  const s = typeof v === 'string' ? v : String(v);
  return s.replace(/[\x00-\x1f\x7f]/g, (c) => ESCAPES[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
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
