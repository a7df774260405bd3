// What a client sees when something goes wrong: a PostgreSQL ErrorResponse with
// a real SQLSTATE. Errors are values; `toBuffer()` gives the wire bytes.
// SQLSTATEs: https://www.postgresql.org/docs/current/errcodes-appendix.html
import { noticeMessage, type NoticeFields } from './backend.js';

export const SqlState = {
  connectionFailure: '08006',
  protocolViolation: '08P01',
  invalidAuthorization: '28000',
  invalidPassword: '28P01',
  invalidCatalogName: '3D000',
  tooManyConnections: '53300',
  configurationLimitExceeded: '53400',
  featureNotSupported: '0A000',
  insufficientPrivilege: '42501',
  queryCanceled: '57014',
  idleInTransactionTimeout: '25P03',
  idleSessionTimeout: '57P05',
  adminShutdown: '57P01',
  cannotConnectNow: '57P03',
  objectNotInPrerequisiteState: '55000',
  configurationError: 'F0000',
  invalidParameterValue: '22023',
  internalError: 'XX000',
} as const;

export class PgError extends Error {
  readonly severity: NoticeFields['severity'];
  readonly code: string;
  readonly detail: string | undefined;
  readonly hint: string | undefined;

  constructor(f: NoticeFields) {
    super(f.message);
    this.severity = f.severity;
    this.code = f.code;
    this.detail = f.detail;
    this.hint = f.hint;
  }

  toBuffer(): Buffer {
    return noticeMessage('E', { severity: this.severity, code: this.code, message: this.message, detail: this.detail, hint: this.hint });
  }
}

export const fatal = (code: string, message: string, extra: { detail?: string; hint?: string } = {}): PgError =>
  new PgError({ severity: 'FATAL', code, message, ...extra });

/** The one answer to every failed login, so that user existence never leaks (as PostgreSQL does). */
export const passwordFailed = (user: string): PgError =>
  fatal(SqlState.invalidPassword, `password authentication failed for user "${user}"`);
