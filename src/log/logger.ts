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

type LevelName = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

/**
 * A per-connection logger that keeps only its bindings: a pino child costs
 * about a kilobyte per client, and making one per line (every login and
 * disconnection writes one with log_connections) costs more than the line.
 * Each line goes to the nearest real logger with the bindings merged in, as a
 * child would write them. Methods live on the prototype: no closure per connection.
 */
class LazyChild {
  /** The nearest real logger, and every binding from there down. */
  private readonly real: Logger | ConnLogger;
  private readonly bindings: Record<string, unknown>;

  constructor(parent: Logger | ConnLogger, bindings: Record<string, unknown>) {
    if (parent instanceof LazyChild) {
      this.real = parent.real;
      this.bindings = { ...parent.bindings, ...bindings };
    } else {
      this.real = parent;
      this.bindings = bindings;
    }
  }

  private write(level: LevelName, args: unknown[]): void {
    if (!this.real.isLevelEnabled(level)) return;
    const [first, ...rest] = args;
    const log = this.real[level] as (obj: object, msg?: unknown, ...more: unknown[]) => void;
    if (first instanceof Error) log.call(this.real, { ...this.bindings, err: first }, rest.length > 0 ? rest[0] : first.message, ...rest.slice(1));
    else if (typeof first === 'object' && first !== null) log.call(this.real, { ...this.bindings, ...first }, ...rest);
    else log.call(this.real, this.bindings, first, ...rest);
  }

  trace(...args: Parameters<Logger['trace']>): void {
    this.write('trace', args);
  }
  debug(...args: Parameters<Logger['debug']>): void {
    this.write('debug', args);
  }
  info(...args: Parameters<Logger['info']>): void {
    this.write('info', args);
  }
  warn(...args: Parameters<Logger['warn']>): void {
    this.write('warn', args);
  }
  error(...args: Parameters<Logger['error']>): void {
    this.write('error', args);
  }
  fatal(...args: Parameters<Logger['fatal']>): void {
    this.write('fatal', args);
  }
  isLevelEnabled(level: string): boolean {
    return this.real.isLevelEnabled(level);
  }
  child(bindings: Record<string, unknown>): ConnLogger {
    return new LazyChild(this, bindings) as unknown as ConnLogger;
  }
}

export function lazyChild(parent: Logger | ConnLogger, bindings: Record<string, unknown>): ConnLogger {
  return new LazyChild(parent, bindings) as unknown as ConnLogger;
}
