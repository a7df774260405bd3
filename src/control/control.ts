// The admin console's controls (PgBouncer's PAUSE, RESUME, KILL, RELOAD, …)
// as values: parsed once from the console's text, then carried to every worker.
export type ShutdownMode = 'immediate' | 'wait_for_servers' | 'wait_for_clients';

export type Control =
  | { kind: 'pause' | 'resume' | 'reconnect' | 'kill' | 'wait_close'; database: string | null }
  | { kind: 'disable' | 'enable'; database: string }
  | { kind: 'kill_client'; id: number }
  | { kind: 'reload' }
  | { kind: 'shutdown'; mode: ShutdownMode }
  | { kind: 'set'; key: string; value: string };

export type ControlOutcome = { ok: true; warnings: string[] } | { ok: false; error: string };

/** Runs a control across the whole proxy (every worker), resolving once it is done everywhere. */
export interface Operator {
  run(control: Control): Promise<ControlOutcome>;
}

/** Console verbs that are controls: admin_users only. */
export const CONTROL_VERBS = ['PAUSE', 'RESUME', 'RECONNECT', 'KILL', 'KILL_CLIENT', 'DISABLE', 'ENABLE', 'WAIT_CLOSE', 'RELOAD', 'SHUTDOWN', 'SET'] as const;

/** The usage line of each control, for SHOW HELP and syntax errors. */
export const CONTROL_USAGE: readonly string[] = [
  'SET key = arg',
  'RELOAD',
  'PAUSE [<db>]',
  'RESUME [<db>]',
  'DISABLE <db>',
  'ENABLE <db>',
  'RECONNECT [<db>]',
  'KILL [<db>]',
  'KILL_CLIENT <id>',
  'SHUTDOWN',
  'SHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS',
  'WAIT_CLOSE [<db>]',
];

export function isControlVerb(verb: string): boolean {
  return (CONTROL_VERBS as readonly string[]).includes(verb.toUpperCase());
}

/** A control from one console statement, or the reason it is not one. */
export function parseControl(statement: string): Control | { error: string } {
  const text = statement.trim();
  const verbWord = /^\S*/.exec(text)![0];
  const verb = verbWord.toUpperCase();
  if (verb === 'SET') return parseSet(text.slice(verbWord.length));
  const args = words(text.slice(verbWord.length));
  if (args === null) return { error: 'a quoted name has no closing quote' };
  const optionalDb = (kind: 'pause' | 'resume' | 'reconnect' | 'kill' | 'wait_close'): Control | { error: string } =>
    args.length <= 1 ? { kind, database: args[0] ?? null } : { error: `${verb} takes at most one database name` };
  switch (verb) {
    case 'PAUSE':
    case 'RESUME':
    case 'RECONNECT':
    case 'KILL':
    case 'WAIT_CLOSE':
      return optionalDb(verb.toLowerCase() as 'pause');
    case 'DISABLE':
    case 'ENABLE':
      return args.length === 1 ? { kind: verb === 'DISABLE' ? 'disable' : 'enable', database: args[0]! } : { error: `${verb} needs one database name` };
    case 'KILL_CLIENT': {
      const id = args.length === 1 && /^\d+$/.test(args[0]!) ? Number(args[0]) : NaN;
      return Number.isSafeInteger(id) ? { kind: 'kill_client', id } : { error: 'KILL_CLIENT needs a client id (the id column of SHOW CLIENTS)' };
    }
    case 'RELOAD':
      return args.length === 0 ? { kind: 'reload' } : { error: 'RELOAD takes no arguments' };
    case 'SHUTDOWN': {
      if (args.length === 0) return { kind: 'shutdown', mode: 'immediate' };
      const mode = args.length === 1 ? args[0]!.toLowerCase() : '';
      if (mode === 'wait_for_servers' || mode === 'wait_for_clients') return { kind: 'shutdown', mode };
      return { error: 'SHUTDOWN takes nothing, WAIT_FOR_SERVERS or WAIT_FOR_CLIENTS' };
    }
  }
  return { error: `${verb} is not a control` };
}

/** `SET key = value` or `SET key TO value`; the value may be quoted. */
function parseSet(afterVerb: string): Control | { error: string } {
  const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:=|\s+TO\s+)\s*(.*?)\s*$/is.exec(afterVerb);
  if (!m) return { error: 'SET needs key = value, e.g. SET default_pool_size = 30' };
  const value = m[2]!;
  if (!/^(['"]).*\1$/s.test(value)) return /['"]/.test(value[0] ?? '') ? { error: 'the value has no closing quote' } : { kind: 'set', key: m[1]!.toLowerCase(), value };
  const parsed = words(value);
  if (parsed === null || parsed.length !== 1) return { error: 'SET takes one value; quote it if it has spaces' };
  return { kind: 'set', key: m[1]!.toLowerCase(), value: parsed[0]! };
}

/** Whitespace-separated words; 'a b' or "a b" is one ('' inside quotes is one quote, as in SQL). Null on an unclosed quote. */
function words(text: string): string[] | null {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    while (i < text.length && /\s/.test(text[i]!)) i++;
    if (i >= text.length) return out;
    const q = text[i];
    if (q === "'" || q === '"') {
      let word = '';
      i++;
      for (;;) {
        if (i >= text.length) return null;
        if (text[i] === q) {
          if (text[i + 1] === q) {
            word += q;
            i += 2;
            continue;
          }
          i++;
          break;
        }
        word += text[i++];
      }
      out.push(word);
    } else {
      const start = i;
      while (i < text.length && !/\s/.test(text[i]!)) i++;
      out.push(text.slice(start, i));
    }
  }
}
