// The pino root logger. One child per connection carries {conn, db, user, client_addr};
// secrets never reach a log call, and the redact paths are a second line of defence.
import { pino, type Logger } from 'pino';

export type { Logger };

const REDACT = ['password', 'auth_password', '*.password', '*.auth_password', 'clientKey', 'serverKey', 'secret'];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino({ name: 'pg-ingress', level, redact: { paths: REDACT, censor: '[redacted]' }, base: { pid: process.pid } }, destination);
}
