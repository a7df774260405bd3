// The console's controls (PAUSE, RELOAD, KILL, …): parsed here, run across
// every worker by the operator, answered as PgBouncer answers them: the verb as
// the command tag, warnings as notices, a failure as an ErrorResponse.
import { commandComplete, noticeMessage } from '../protocol/backend.js';
import { PgError, SqlState } from '../protocol/pg-error.js';
import { parseControl, type Operator } from '../control/control.js';

/** PgBouncer's syntax-error SQLSTATE would be 08P01; 42601 (syntax_error) is what Postgres uses. */
const SYNTAX_ERROR = '42601';

/** @param afterAnswer runs an action once the answer is on its way (SHUTDOWN would otherwise close this very connection first) */
export async function runControl(statement: string, operator: Operator, afterAnswer: (action: () => void) => void): Promise<Buffer> {
  const control = parseControl(statement);
  if ('error' in control) return new PgError({ severity: 'ERROR', code: SYNTAX_ERROR, message: control.error, hint: 'SHOW HELP lists the commands' }).toBuffer();
  if (control.kind === 'shutdown') {
    afterAnswer(() => void operator.run(control));
    return commandComplete('SHUTDOWN');
  }
  const outcome = await operator.run(control);
  if (!outcome.ok) return new PgError({ severity: 'ERROR', code: control.kind === 'set' ? SqlState.invalidParameterValue : SqlState.configurationError, message: outcome.error }).toBuffer();
  const notices = outcome.warnings.map((w) => noticeMessage('N', { severity: 'WARNING', code: '01000', message: w }));
  return Buffer.concat([...notices, commandComplete(statement.trim().split(/\s+/)[0]!.toUpperCase())]);
}
