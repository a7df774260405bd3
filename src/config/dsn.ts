// Parses the libpq / pgbouncer.ini connection strings used as `databases:`
// values: `host=… port=… dbname=…`. Values stay strings; the schema coerces them.
// See PostgreSQL docs, "Connection Strings" (keyword/value form).

/** Keys a database entry may carry, in the order the docs list them. */
export const DSN_KEYS = [
  'host',
  'port',
  'dbname',
  // PgBouncer's forced server user: parsed so that load.ts can refuse it by name.
  'user',
  'pool_mode',
  'pool_size',
  'min_pool_size',
  'reserve_pool_size',
  'max_db_connections',
  'max_db_client_connections',
  'auth_dbname',
  'auth_user',
  'auth_query',
  'connect_query',
  'client_encoding',
  'datestyle',
  'timezone',
  'server_lifetime',
  'load_balance_hosts',
] as const;

export type DsnKey = (typeof DSN_KEYS)[number];
export type DsnFields = Partial<Record<DsnKey, string>>;

/** Why an entry cannot name the server login (user=, password=): there is no stored password to use. */
export const NO_FORCED_LOGIN =
  "pg-ingress logs in upstream as each client's own user with that client's credentials (auth pass-through), so it has no stored password for any other user";

/** A DSN that cannot be parsed. Its message never quotes values (one may be a password). */
export class DsnError extends Error {
  override name = 'DsnError';
}

const KNOWN = new Set<string>(DSN_KEYS);
const isSpace = (c: string | undefined): boolean => c === ' ' || c === '\t' || c === '\n' || c === '\r';

/**
 * Parses `key=value …`. Values may be single-quoted; a backslash escapes the
 * next character inside or outside quotes, as libpq's conninfo_parse does.
 */
export function parseDsn(text: string): DsnFields {
  const out: DsnFields = {};
  let i = 0;
  const n = text.length;
  for (;;) {
    while (isSpace(text[i])) i++;
    if (i >= n) break;

    const keyStart = i;
    while (i < n && text[i] !== '=' && !isSpace(text[i])) i++;
    let key = text.slice(keyStart, i);
    while (isSpace(text[i])) i++;
    if (text[i] !== '=') {
      throw new DsnError(`missing "=" after "${key}" at offset ${keyStart}`);
    }
    i++;
    while (isSpace(text[i])) i++;

    let value = '';
    if (text[i] === "'") {
      i++;
      for (;;) {
        if (i >= n) throw new DsnError(`unterminated quoted value for "${key}"`);
        const c = text[i]!;
        if (c === "'") {
          i++;
          break;
        }
        if (c === '\\' && i + 1 < n) {
          value += text[i + 1];
          i += 2;
          continue;
        }
        value += c;
        i++;
      }
    } else {
      while (i < n && !isSpace(text[i])) {
        if (text[i] === '\\' && i + 1 < n) i++;
        value += text[i];
        i++;
      }
    }

    if (key === 'reserve_pool') key = 'reserve_pool_size'; // PgBouncer's older name, still accepted by it
    checkKey(key);
    if (Object.hasOwn(out, key)) throw new DsnError(`"${key}" is given twice`);
    out[key as DsnKey] = value;
  }
  return out;
}

function checkKey(key: string): void {
  if (KNOWN.has(key)) return;
  if (key === '') throw new DsnError('empty key before "="');
  if (key === 'password') throw new DsnError(`"password" is not supported: ${NO_FORCED_LOGIN}; remove it`);
  throw new DsnError(`unknown key "${key}"; known keys: ${DSN_KEYS.join(', ')}`);
}
