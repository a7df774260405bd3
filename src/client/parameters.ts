// Startup parameters: which a client may send, which we track per client and
// re-apply on a server that has other values (as PgBouncer does), and which we
// ignore. https://www.pgbouncer.org/config.html#ignore_startup_parameters
import { fatal, SqlState, type PgError } from '../protocol/pg-error.js';

/** Parameters PostgreSQL reports (GUC_REPORT) that pg-ingress keeps per client. */
export const TRACKED_PARAMETERS = ['client_encoding', 'DateStyle', 'TimeZone', 'standard_conforming_strings', 'application_name', 'IntervalStyle', 'search_path'] as const;

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_.]*$/;

export class ParameterPolicy {
  /** lower-case name → the name as reported by the server. */
  private readonly tracked = new Map<string, string>();
  private readonly ignored: Set<string>;

  constructor(extra: readonly string[], ignore: readonly string[]) {
    for (const name of [...TRACKED_PARAMETERS, ...extra]) {
      if (IDENTIFIER.test(name)) this.tracked.set(name.toLowerCase(), name);
    }
    this.ignored = new Set(ignore.map((n) => n.toLowerCase()));
  }

  /** The canonical name if `name` is tracked. */
  canonical(name: string): string | undefined {
    return this.tracked.get(name.toLowerCase());
  }

  /**
   * The tracked values a client asked for at startup, from its parameters and
   * `options` (`-c name=value` / `--name=value`). Throws the PgError to send for
   * anything else, with PgBouncer's wording.
   */
  fromStartup(params: ReadonlyMap<string, string>): Map<string, string> | PgError {
    const wanted = new Map<string, string>();
    // PostgreSQL applies `options` first, so an explicit parameter wins whatever the order.
    const options = [...params].find(([name]) => name.toLowerCase() === 'options');
    if (options) {
      const err = this.fromOptions(options[1], wanted);
      if (err) return err;
    }
    for (const [name, value] of params) {
      const lower = name.toLowerCase();
      if (lower === 'user' || lower === 'database' || lower === 'replication' || lower === 'options' || this.ignored.has(lower)) continue;
      const canonical = this.tracked.get(lower);
      if (!canonical) return unsupported(name);
      wanted.set(canonical, value);
    }
    return wanted;
  }

  private fromOptions(options: string, wanted: Map<string, string>): PgError | null {
    const words = splitOptions(options);
    for (let i = 0; i < words.length; i++) {
      let setting: string | undefined;
      const word = words[i]!;
      if (word === '-c') setting = words[++i];
      else if (word.startsWith('-c')) setting = word.slice(2);
      else if (word.startsWith('--')) setting = word.slice(2);
      const eq = setting?.indexOf('=') ?? -1;
      if (setting === undefined || eq <= 0) return unsupported(`options (${options})`);
      const name = setting.slice(0, eq).replaceAll('-', '_');
      if (this.ignored.has(name.toLowerCase())) continue;
      const canonical = this.tracked.get(name.toLowerCase());
      if (!canonical) return unsupported(`options (${name})`);
      wanted.set(canonical, setting.slice(eq + 1));
    }
    return null;
  }
}

/** The server side of parameter syncing: its current values and its session defaults. */
export interface ParameterHolder {
  /** Current values: as reported (ParameterStatus), and as we set them for unreported ones. */
  readonly params: Map<string, string>;
  /** Values reported at login, before any client touched the server: the session defaults. */
  readonly initialParams: ReadonlyMap<string, string>;
  /** Names of untracked settings a client left on it (SET work_mem …), also in `params`: reset for anyone else. */
  readonly sessionSettings?: Set<string>;
}

/** Set on the server but neither a default nor the client's: to be RESET before the client uses it. */
function leftover(policy: ParameterPolicy, name: string, client: ReadonlyMap<string, string>, server: ParameterHolder): boolean {
  if (client.has(name) || server.initialParams.has(name)) return false;
  return policy.canonical(name) === name || server.sessionSettings?.has(name) === true;
}

/**
 * A client's full set of tracked values: what it asked for, else the server's
 * session default for every parameter the server reports. Parameters the
 * server does not report (search_path before PostgreSQL 18) are included only
 * when asked for.
 */
export function clientParameters(policy: ParameterPolicy, wanted: ReadonlyMap<string, string>, server: ParameterHolder): Map<string, string> {
  const params = new Map<string, string>();
  for (const [name, value] of server.initialParams) if (policy.canonical(name) === name) params.set(name, value);
  for (const [name, value] of wanted) params.set(name, value);
  return params;
}

/** application_name values PostgreSQL reports back exactly as sent: printable ASCII, within NAMEDATALEN. */
const VERBATIM_APPLICATION_NAME = /^[\x20-\x7e]{0,63}$/;

/**
 * The client's tracked values when a login can be answered from a pool's
 * cached session defaults, without a server: every value it asked for is the
 * default already, or an application_name the server would report as sent.
 * null when a server must see them first (to check or canonicalize them).
 */
export function cachedLoginParameters(policy: ParameterPolicy, wanted: ReadonlyMap<string, string>, defaults: ReadonlyMap<string, string>): Map<string, string> | null {
  for (const [name, value] of wanted) {
    if (defaults.get(name) === value) continue;
    if (name === 'application_name' && defaults.has(name) && VERBATIM_APPLICATION_NAME.test(value)) continue;
    return null;
  }
  return clientParameters(policy, wanted, { initialParams: defaults, params: new Map() });
}

/** What a login reports in ParameterStatus from cached defaults: the defaults, with the client's own values. */
export function reportedParameters(defaults: ReadonlyMap<string, string>, client: ReadonlyMap<string, string>): Map<string, string> {
  const reported = new Map(defaults);
  for (const [name, value] of client) if (reported.has(name)) reported.set(name, value);
  return reported;
}

/** True when the server already has the client's values: no round trip needed (checked without allocating). */
export function parametersAgree(policy: ParameterPolicy, client: ReadonlyMap<string, string>, server: ParameterHolder): boolean {
  for (const [name, value] of client) if (server.params.get(name) !== value) return false;
  if (server.params.size === server.initialParams.size) return true; // nothing unreported was set
  for (const name of server.params.keys()) if (leftover(policy, name, client, server)) return false;
  return true;
}

/**
 * The query that brings a server to a client's values ('' if they agree), and
 * what to record once it ran. set_config() reads values as postgresql.conf
 * does, so a search_path list stays a list; unreported parameters the client
 * did not ask for are RESET to the session default.
 */
export function parameterSync(policy: ParameterPolicy, client: Map<string, string>, server: ParameterHolder): { sql: string; done: () => void } {
  const set = parameterSyncSql(client, server.params);
  const resets: string[] = [];
  for (const name of server.params.keys()) if (leftover(policy, name, client, server)) resets.push(name);
  const sql = (set ? `${set};` : '') + resets.map((n) => `RESET ${n};`).join('');
  return {
    sql,
    done() {
      for (const name of resets) {
        server.params.delete(name);
        server.sessionSettings?.delete(name);
      }
      for (const [name, value] of client) {
        // Reported parameters come back canonical (ParameterStatus); keep that form on both sides.
        if (server.initialParams.has(name)) client.set(name, server.params.get(name) ?? value);
        else {
          server.params.set(name, value);
          if (policy.canonical(name) !== name) server.sessionSettings?.add(name);
        }
      }
    },
  };
}

/** The SELECT of set_config() calls for the values that differ, or ''. */
export function parameterSyncSql(wanted: ReadonlyMap<string, string>, server: ReadonlyMap<string, string>): string {
  const calls: string[] = [];
  for (const [name, value] of wanted) {
    if (server.get(name) === value) continue;
    calls.push(`pg_catalog.set_config(${quoteLiteral(name)}, ${quoteLiteral(value)}, false)`);
  }
  return calls.length === 0 ? '' : `SELECT ${calls.join(', ')}`;
}

// E'' reads backslashes the same whatever standard_conforming_strings the server has now.
function quoteLiteral(value: string): string {
  return `E'${value.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`;
}

// libpq's options: words separated by spaces, a backslash escapes the next character.
function splitOptions(options: string): string[] {
  const words: string[] = [];
  let word = '';
  for (let i = 0; i < options.length; i++) {
    const c = options[i]!;
    if (c === '\\' && i + 1 < options.length) word += options[++i];
    else if (c === ' ' || c === '\t') {
      if (word) words.push(word);
      word = '';
    } else word += c;
  }
  if (word) words.push(word);
  return words;
}

function unsupported(name: string): PgError {
  return fatal(SqlState.protocolViolation, `unsupported startup parameter: ${name}`, {
    hint: 'add it to ignore_startup_parameters (or track_extra_parameters) in the pg-ingress configuration',
  });
}

/**
 * What a server's session has set besides its defaults: read when a client ran
 * SET or RESET. `role` (SET ROLE) is hidden from pg_settings (GUC_NO_SHOW_ALL),
 * so it is asked for by name; its default reads 'none'.
 */
export const SESSION_SETTINGS =
  "SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session' " +
  "UNION ALL SELECT 'role', pg_catalog.current_setting('role') WHERE pg_catalog.current_setting('role') <> 'none'";

// A setting name RESET can name unquoted (built-in and custom names: identifiers joined by dots).
const SETTING_NAME = /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)*$/;

/**
 * Takes what a server reported of its session settings as the client's own:
 * every setting the server does not report by ParameterStatus (those follow
 * their own path) and that is set in this session. The server's record is made
 * to match, so that the next client of it gets them reset. A name that cannot
 * be reset safely leaves the server dirty (closed when given back).
 */
export function adoptSessionSettings(policy: ParameterPolicy, rows: readonly (string | null)[][], client: Map<string, string>, server: ParameterHolder & { dirty: boolean; readonly sessionSettings: Set<string> }): void {
  const found = new Map<string, string>();
  for (const [name, setting] of rows) {
    if (name == null || setting == null || server.initialParams.has(name)) continue; // reported: ParameterStatus carries it (NULL: nothing to carry)
    if (!SETTING_NAME.test(name)) {
      server.dirty = true;
      continue;
    }
    found.set(policy.canonical(name) ?? name, setting);
  }
  for (const name of [...client.keys()]) if (!server.initialParams.has(name) && !found.has(name)) client.delete(name);
  for (const [name, value] of found) client.set(name, value);
  for (const name of [...server.params.keys()]) if (!server.initialParams.has(name) && !found.has(name)) server.params.delete(name);
  server.sessionSettings.clear();
  for (const [name, value] of found) {
    server.params.set(name, value);
    if (policy.canonical(name) !== name) server.sessionSettings.add(name);
  }
}
