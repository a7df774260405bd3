// Builds the one Config the process runs with: defaults < YAML file <
// Bitnami PGBOUNCER_* < PG_INGRESS_* < overrides, validated once and frozen.
// Each layer replaces whole top-level keys (a `databases` map from the
// environment replaces the file's map rather than merging into it).
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { core } from 'zod';
import { NO_FORCED_LOGIN } from './dsn.js';
import { bitnamiLayer, pathKey, pgIngressLayer, readValueFile, type Env, type Layer } from './env.js';
import { isIniFile, readPgBouncerIni } from './ini.js';
import { applyPgBouncerSettings, pgbouncerSetting } from './pgbouncer-settings.js';
import { readUserlist, secretKind } from './userlist.js';
import {
  CONFIG_KEYS,
  ConfigError,
  DATABASE_KEYS,
  USER_KEYS,
  closest,
  configSchema,
  type Config,
  type DatabaseEntry,
  type UserEntry,
} from './schema.js';

export { ConfigError } from './schema.js';

export interface LoadOptions {
  /** YAML file or pgbouncer.ini to read (see isIniFile); null or absent for defaults + environment only. */
  file?: string | null;
  /** Defaults to process.env. */
  env?: Env;
  /** Raw YAML-level values applied last (tests). */
  overrides?: Record<string, unknown>;
}

/** Secrets given inline or in a file (a mounted Kubernetes Secret); at most one of the two. */
const SECRET_FILES = [
  ['auth_password', 'auth_password_file'],
  ['metrics_auth_token', 'metrics_auth_token_file'],
] as const;

export function loadConfig(opts: LoadOptions = {}): Config {
  const file = opts.file ?? null;
  const env = opts.env ?? process.env;
  const layers: Array<{ layer: Layer; label: string }> = [];
  if (file !== null) layers.push({ layer: readConfigFile(file), label: file });
  layers.push({ layer: bitnamiLayer(env), label: 'environment' });
  layers.push({ layer: pgIngressLayer(env), label: 'environment' });
  if (opts.overrides) layers.push({ layer: { values: { ...opts.overrides }, sources: {} }, label: 'overrides' });

  const problems: string[] = [];
  const merged: Record<string, unknown> = {};
  const sources = new Map<string, string>();
  const sourceOf = (path: readonly PropertyKey[]): string => {
    for (let n = path.length; n > 0; n--) {
      const s = sources.get(pathKey(...path.slice(0, n).map(String)));
      if (s !== undefined) return s;
    }
    return 'defaults';
  };

  for (const { layer, label } of layers) {
    const v = layer.values;
    const src = (k: string): string => layer.sources[pathKey(k)] ?? label;
    for (const [inline, fromFile] of SECRET_FILES) {
      if (v[inline] != null && v[fromFile] != null) {
        problems.push(`${src(inline)}, ${src(fromFile)}: ${inline} and ${fromFile} are both set; set only one`);
      }
      // A higher layer choosing one source drops the other from below.
      if (v[inline] != null) delete merged[fromFile];
      if (v[fromFile] != null) delete merged[inline];
    }
    for (const [key, value] of Object.entries(v)) {
      merged[key] = value;
      // Provenance below this key belonged to the replaced value.
      const under = pathKey(key, '');
      for (const p of [...sources.keys()]) if (p === key || p.startsWith(under)) sources.delete(p);
      sources.set(pathKey(key), src(key));
    }
    for (const [p, s] of Object.entries(layer.sources)) sources.set(p, s);
  }

  for (const map of ['databases', 'users'] as const) {
    const m = merged[map];
    if (m === null || typeof m !== 'object' || Array.isArray(m)) continue;
    for (const name of Object.keys(m)) {
      // '__proto__' would reach a plain object's prototype; names come from clients.
      if (name === '' || name === '__proto__') problems.push(`${sourceOf([map])}: ${map}: ${JSON.stringify(name)} is not a usable name`);
    }
  }
  // PgBouncer settings without an effect here go before validation (pgbouncer-settings.ts).
  const compat = applyPgBouncerSettings(merged, sourceOf);
  problems.push(...compat.problems);
  const notices = [...layers.flatMap(({ layer }) => layer.notices ?? []), ...compat.notices];
  if (problems.length > 0) throw new ConfigError(problems);

  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.flatMap((i) => formatIssue(i, merged, sourceOf)));
  }
  const { auth_password_file, metrics_auth_token_file, databases, users, ...rest } = parsed.data;

  /** A secret: read from `path`, the value of the *_file key `key`, when set; else the inline value. */
  const secret = (inline: string | null, key: string, path: string | null): string | null => {
    if (path === null) return inline;
    const where = `${sourceOf([key])}: ${key}`;
    try {
      const value = readValueFile(path);
      if (value === '') problems.push(`${where}: ${JSON.stringify(path)} is empty`);
      return value;
    } catch (e) {
      const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      problems.push(`${where}: cannot read ${JSON.stringify(path)}: ${why}`);
      return null;
    }
  };
  const auth_file_passwords = rest.auth_file === null ? {} : readUserlist(rest.auth_file, `${sourceOf(['auth_file'])}: auth_file`);
  const auth_password = secret(rest.auth_password, 'auth_password_file', auth_password_file) ?? authUserFromFile(rest.auth_user, auth_file_passwords, sourceOf(['auth_file']), notices);
  notices.push(...plaintextUsers(rest.auth_user, auth_file_passwords, sourceOf(['auth_file'])));
  const metrics_auth_token = secret(rest.metrics_auth_token, 'metrics_auth_token_file', metrics_auth_token_file);
  // Sent in an HTTP header: a space or control character could never match what a scraper sends.
  if (metrics_auth_token !== null && metrics_auth_token !== '' && !/^[\x21-\x7e]+$/.test(metrics_auth_token)) {
    const key = metrics_auth_token_file !== null ? 'metrics_auth_token_file' : 'metrics_auth_token';
    problems.push(`${sourceOf([key])}: ${key}: the token must be visible ASCII characters without spaces`);
  }

  if ((rest.client_tls_cert_file === null) !== (rest.client_tls_key_file === null)) {
    const [set, unset] = rest.client_tls_cert_file !== null ? ['client_tls_cert_file', 'client_tls_key_file'] : ['client_tls_key_file', 'client_tls_cert_file'];
    problems.push(`${sourceOf([set])}: ${set}: is set but ${unset} is not; set both, or neither for a self-signed certificate`);
  }

  const dbs: Record<string, DatabaseEntry> = Object.create(null);
  for (const [name, { user, ...entry }] of Object.entries(databases)) {
    if (user !== null) {
      problems.push(`${sourceOf(['databases', name, 'user'])}: databases.${name}.user: a forced server user is not supported: ${NO_FORCED_LOGIN}; remove it`);
    }
    dbs[name] = { name, ...entry, user: null };
  }
  const us: Record<string, UserEntry> = Object.create(null);
  for (const [name, entry] of Object.entries(users)) us[name] = { name, ...entry };

  if (problems.length > 0) throw new ConfigError(problems);
  const config: Config = { config_file: file, ...rest, auth_password, auth_file_passwords, metrics_auth_token, databases: dbs, users: us, notices };
  return deepFreeze(config);
}

/**
 * auth_user's password from auth_file when nothing else sets it, as in PgBouncer. A hash or
 * verifier there cannot log in through node-postgres: said in a notice, and the login goes without.
 */
function authUserFromFile(authUser: string, passwords: Readonly<Record<string, string>>, where: string, notices: string[]): string | null {
  if (!Object.hasOwn(passwords, authUser)) return null;
  const secret = passwords[authUser]!;
  const kind = secretKind(secret);
  if (kind === 'plaintext') return secret;
  notices.push(
    `${where}: auth_file: the entry of auth_user "${authUser}" is ${kind === 'md5' ? 'an md5 hash' : 'a SCRAM verifier'}, not a password: pg-ingress needs auth_user's password itself to run auth_query, so it logs in without one; set auth_password_file (a mounted Secret) to the password`,
  );
  return null;
}

/** Users whose auth_file entry is a plaintext password: looked up with auth_query instead (see src/auth/userlist.ts). */
function plaintextUsers(authUser: string, passwords: Readonly<Record<string, string>>, where: string): string[] {
  const names = Object.keys(passwords).filter((u) => u !== authUser && secretKind(passwords[u]!) === 'plaintext');
  if (names.length === 0) return [];
  const shown = names.slice(0, 5).map((u) => JSON.stringify(u)).join(', ') + (names.length > 5 ? ` and ${names.length - 5} more` : '');
  const one = names.length === 1;
  return [
    `${where}: auth_file: ${shown} ${one ? 'has a plaintext password' : 'have plaintext passwords'} there, which pg-ingress does not use (an upstream login replays what the client's SCRAM proof yields, never a stored password): ${one ? 'this user is' : 'these users are'} looked up with auth_query instead; put SCRAM verifiers in auth_file to keep them out of auth_query`,
  ];
}

function readConfigFile(file: string): Layer {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new ConfigError([`${file}: cannot read the configuration file: ${why}`]);
  }
  return isIniFile(file, text) ? readPgBouncerIni(file) : { values: parseYaml(file, text), sources: {} };
}

function parseYaml(file: string, text: string): Record<string, unknown> {
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    // Only the first line: the rest quotes the source, which may hold a password.
    throw new ConfigError(doc.errors.map((e) => `${file}: ${e.message.split('\n')[0]!.replace(/:$/, '')}`));
  }
  const data: unknown = doc.toJS();
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError([`${file}: expected a mapping of settings at the top level`]);
  }
  return data as Record<string, unknown>;
}

function formatIssue(issue: core.$ZodIssue, raw: Record<string, unknown>, sourceOf: (p: readonly PropertyKey[]) => string): string[] {
  const { path } = issue;
  const at = (p: readonly PropertyKey[]): string => (p.length === 0 ? '(top level)' : p.map(String).join('.'));
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => {
      const full = [...path, key];
      let hint = '';
      if (path.length === 0) {
        const near = closest(key, CONFIG_KEYS);
        // A PgBouncer key that reaches here is one the table calls implemented, in a build that lacks it.
        hint = pgbouncerSetting(key) ? ' (a PgBouncer setting this build of pg-ingress does not read)' : near ? ` (did you mean ${near}?)` : '';
      } else {
        const known = path[0] === 'databases' ? DATABASE_KEYS : USER_KEYS;
        const near = closest(key, known);
        hint = near ? ` (did you mean ${near}?)` : `; known keys: ${known.join(', ')}`;
        if (path[0] === 'databases' && key === 'password') hint = `: a stored password is not supported: ${NO_FORCED_LOGIN}; remove it`;
      }
      return `${sourceOf(full)}: ${at(full)}: unknown key${hint}`;
    });
  }
  let message = issue.message;
  if (issue.code === 'invalid_type') {
    // Only maps reach here. Name the type, not the value: a misplaced DSN may hold a password.
    const value = path.reduce<unknown>((o, k) => (o !== null && typeof o === 'object' ? (o as Record<PropertyKey, unknown>)[k] : undefined), raw);
    const expected = issue.expected === 'record' || issue.expected === 'object' ? 'a mapping' : issue.expected;
    message = `expected ${expected}, got ${typeName(value)}`;
  }
  return [`${sourceOf(path)}: ${at(path)}: ${message}`];
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'a mapping' : `a ${typeof v}`;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
