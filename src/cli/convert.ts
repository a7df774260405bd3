// `pg-ingress convert pgbouncer.ini [--userlist FILE]`: the same configuration
// as YAML. It loads the file exactly as `--config` would (so it converts only
// what would run), keeps the settings the file sets, typed, and says in comments
// what was left out and why, and which defaults differ from PgBouncer's.
// Secrets stay where they are: the userlist is named (auth_file), never copied.
import { Document, isMap, isScalar, type Pair } from 'yaml';
import { loadConfig, type Config } from '../config/index.js';
import { pathKey } from '../config/env.js';
import { readPgBouncerIni } from '../config/ini.js';
import { applyPgBouncerSettings, PGBOUNCER_SETTINGS } from '../config/pgbouncer-settings.js';
import { secretKind } from '../config/userlist.js';

export interface ConvertOptions {
  /** The userlist to name as auth_file instead of the one the ini names (its path on the old host). */
  userlist?: string;
}

/** The YAML text; a ConfigError when the file would not run. */
export function convertIni(file: string, opts: ConvertOptions = {}): string {
  const overrides = opts.userlist === undefined ? undefined : { auth_file: opts.userlist };
  // Validates everything (and reads the userlist) exactly as a start would; env stays out of it.
  const config = loadConfig({ file, env: {}, overrides });

  const layer = readPgBouncerIni(file);
  const raw: Record<string, unknown> = JSON.parse(JSON.stringify(layer.values));
  if (overrides) Object.assign(raw, overrides);
  const sourceOf = (path: readonly string[]): string => {
    for (let n = path.length; n > 0; n--) {
      const s = layer.sources[pathKey(...path.slice(0, n))];
      if (s !== undefined) return s;
    }
    return file;
  };
  const { notices: leftOut } = applyPgBouncerSettings(raw, sourceOf);

  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (key === 'databases' || key === 'users') out[key] = entries(config, key, value as Record<string, Record<string, string>>);
    else out[key] = key in config ? (config as unknown as Record<string, unknown>)[key] : value;
  }

  const doc = new Document(out);
  const header = [
    ` pg-ingress configuration converted from ${file} by \`pg-ingress convert\`.`,
    ' Environment variables (PG_INGRESS_*, PGBOUNCER_*) still override it; see docs/configuration.md.',
  ];
  if (leftOut.length > 0) header.push('', ' Left out, no effect in pg-ingress:', ...leftOut.map((n) => `   ${n}`));
  const defaults = differingDefaults(config, raw);
  if (defaults.length > 0) header.push('', ' Not set in the file, so the pg-ingress default applies, which differs from PgBouncer’s:', ...defaults.map((d) => `   ${d}`));
  const auth = authFileRemarks(config);
  if (auth.length > 0) header.push('', ...auth.map((a) => ` ${a}`));
  if (config.notices.length > leftOut.length) {
    header.push('', ' Also:', ...config.notices.filter((n) => !leftOut.includes(n)).map((n) => `   ${n}`));
  }
  doc.commentBefore = header.join('\n');
  quoteStrings(doc);
  return doc.toString({ lineWidth: 0 });
}

/** Database or user entries: the keys the file gave, with the values pg-ingress read. */
function entries(config: Config, map: 'databases' | 'users', given: Record<string, Record<string, string>>): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const [name, fields] of Object.entries(given)) {
    const parsed = config[map][name] as unknown as Record<string, unknown>;
    out[name] = {};
    for (const [field, text] of Object.entries(fields)) {
      // A port list (one per host) reads as its first port; keep the list as written.
      out[name][field] = field === 'port' && text.includes(',') ? text : (parsed[field] ?? text);
    }
  }
  return out;
}

function differingDefaults(config: Config, raw: Record<string, unknown>): string[] {
  const ours = config as unknown as Record<string, unknown>;
  return PGBOUNCER_SETTINGS.filter((s) => s.section === 'pgbouncer' && s.pgbouncerDefault !== undefined && !(s.key in raw)).map(
    (s) => `${s.key}: ${JSON.stringify(ours[s.key])} here (PgBouncer: ${s.pgbouncerDefault})`,
  );
}

/** What the userlist holds, by kind and count: never a secret. */
function authFileRemarks(config: Config): string[] {
  if (config.auth_file === null) return [];
  const kinds = { scram: 0, md5: 0, plaintext: 0 };
  for (const secret of Object.values(config.auth_file_passwords)) kinds[secretKind(secret)]++;
  const lines = [
    `auth_file: users and their secrets stay in ${config.auth_file} (${kinds.scram} SCRAM verifiers, ${kinds.md5} md5 hashes, ${kinds.plaintext} plaintext passwords); mount it from a Kubernetes Secret.`,
  ];
  if (Object.hasOwn(config.auth_file_passwords, config.auth_user) && secretKind(config.auth_file_passwords[config.auth_user]!) === 'plaintext') {
    lines.push(`auth_user "${config.auth_user}" takes its password from there; to keep it apart, put it alone in a Secret file and set auth_password_file.`);
  }
  return lines;
}

/** Strings that YAML would read as something else (numbers, booleans, null) stay strings. */
function quoteStrings(doc: Document): void {
  const visit = (node: unknown): void => {
    if (isMap(node)) for (const pair of node.items as Pair[]) visit(pair.value);
    else if (isScalar(node) && typeof node.value === 'string' && /^(?:[-+]?[\d.]+|true|false|yes|no|on|off|null|~|)$/i.test(node.value)) node.type = 'QUOTE_DOUBLE';
  };
  visit(doc.contents);
}
