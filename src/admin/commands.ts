// The admin console's commands: reads one statement and answers it, SHOW
// through ./show.ts (PgBouncer's SHOW commands over every worker's statistics).
// Each answer is the wire bytes of one result set (or an ErrorResponse),
// without ReadyForQuery.
import type { Config } from '../config/index.js';
import { emptyQueryResponse } from '../protocol/backend.js';
import { PgError, SqlState } from '../protocol/pg-error.js';
import type { ClusterStats } from '../stats/merge.js';
import { CONTROL_USAGE, isControlVerb, type Operator } from '../control/control.js';
import { runControl } from './controls.js';
import { isShowCommand, show } from './show.js';

export interface CommandContext {
  config: Config;
  /** Runs PAUSE, RELOAD, … across every worker. */
  operator: Operator;
  /** Every worker's statistics, merged. */
  stats: () => Promise<ClusterStats>;
  /** In admin_users (else only in stats_users). */
  isAdmin: boolean;
  /** Seconds the avg_ columns of SHOW STATS cover. */
  statsPeriodSeconds: number;
  /** Runs `action` once the answer has been written to the console's socket (SHUTDOWN: the answer first, then the stop). */
  afterAnswer?: (action: () => void) => void;
}

/** PgBouncer's syntax-error SQLSTATE would be 08P01; 42601 (syntax_error) is what Postgres uses, and clients understand it. */
const SYNTAX_ERROR = '42601';

/** PgBouncer commands pg-ingress does not have, and why. */
const UNSUPPORTED: Readonly<Record<string, string>> = {
  SUSPEND: 'online restart (handing sockets to a new process) is not implemented; run replicas and roll them, SIGTERM drains one',
};

/** Answers one statement of a simple Query (its text, without the trailing semicolon). */
export async function runCommand(statement: string, ctx: CommandContext): Promise<Buffer> {
  const words = statement.trim().split(/\s+/).filter((w) => w !== '');
  if (words.length === 0) return emptyQueryResponse();
  const verb = words[0]!.toUpperCase();
  if (verb === 'SHOW') {
    const what = (words[1] ?? '').toUpperCase();
    if (words.length === 2 && isShowCommand(what)) return show(what, { ...ctx, controlsHelp: CONTROL_USAGE });
    return invalid(statement);
  }
  if (isControlVerb(verb)) {
    if (!ctx.isAdmin) return error(SqlState.insufficientPrivilege, 'admin access needed', `${verb} needs a user in admin_users; stats_users may only use SHOW`);
    return runControl(statement, ctx.operator, ctx.afterAnswer ?? ((action) => setImmediate(action)));
  }
  if (verb in UNSUPPORTED) {
    if (!ctx.isAdmin) return error(SqlState.insufficientPrivilege, 'admin access needed', `${verb} needs a user in admin_users; stats_users may only use SHOW`);
    return error(SqlState.featureNotSupported, `${verb} is not supported by pg-ingress`, UNSUPPORTED[verb]);
  }
  return invalid(statement);
}

function invalid(statement: string): Buffer {
  const shown = statement.length > 200 ? `${statement.slice(0, 200)}…` : statement;
  return error(SYNTAX_ERROR, `invalid command '${shown}', use SHOW HELP;`);
}

function error(code: string, message: string, hint?: string): Buffer {
  return new PgError({ severity: 'ERROR', code, message, hint }).toBuffer();
}
