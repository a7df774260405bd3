// Reads a pgbouncer.ini the way PgBouncer 1.25 does (lib/usual/cfparser.c for
// the file, src/loader.c for connection strings) into the same raw values the
// YAML file gives, so environment overrides and validation stay one path.
// No npm ini parser fits: they cut values at ';' and '#' (a DSN or a query may
// hold either), unquote values, and know neither %include nor quoted keys.
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { dirname, extname, isAbsolute, resolve } from 'node:path';
import { pathKey, type Layer } from './env.js';
import { ConfigError } from './schema.js';

/** PgBouncer's MAX_INCLUDE: %include nesting deeper than this is an error. */
export const MAX_INCLUDE_DEPTH = 10;

const SECTIONS = ['pgbouncer', 'databases', 'users', 'peers'] as const;
type Section = (typeof SECTIONS)[number];

/**
 * Whether `file` is a pgbouncer.ini rather than YAML: by its extension, else
 * by its first meaningful line (a `[section]` header or `%include`, neither of
 * which is a YAML mapping).
 */
export function isIniFile(file: string, text: string): boolean {
  const ext = extname(file).toLowerCase();
  if (ext === '.ini') return true;
  if (ext === '.yaml' || ext === '.yml' || ext === '.json') return false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    return line.startsWith(';') || /^\[[A-Za-z]+\]$/.test(line) || /^%include[ \t]/.test(line);
  }
  return false;
}

/** One `key = value` line, where it was, and the section it belongs to. */
interface Entry {
  section: Section;
  key: string;
  value: string;
  where: string; // file:line
}

/** A pgbouncer.ini (and what it includes) as raw values with each one's file and line. */
export function readPgBouncerIni(file: string): Layer {
  const entries: Entry[] = [];
  parseFile(file, 0, [], { section: null, pgbouncerHeaders: 0 }, entries);
  return toLayer(entries);
}

/** Where the parse is: PgBouncer carries the section across %include, both ways. */
interface ParseState {
  section: Section | null;
  pgbouncerHeaders: number;
}

function parseFile(file: string, depth: number, stack: readonly string[], state: ParseState, out: Entry[]): void {
  let text: string;
  let real: string;
  try {
    real = realpathSync(file);
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    const what = depth === 0 ? 'the configuration file' : 'an included file';
    throw new ConfigError([`${file}: cannot read ${what}: ${why}`]);
  }
  if (stack.includes(real)) {
    throw new ConfigError([`${file}: %include loop: ${[...stack, real].join(' includes ')}`]);
  }
  const here = [...stack, real];
  const n = text.length;
  let p = 0;
  const lineAt = (pos: number): number => {
    let line = 1;
    for (let i = 0; i < pos && i < n; i++) if (text.charCodeAt(i) === 10) line++;
    return line;
  };
  const fail = (pos: number, message: string): never => {
    // The line itself is never quoted: it may hold a password.
    throw new ConfigError([`${file}:${lineAt(pos)}: ${message}`]);
  };
  const restOfLine = (): string => {
    const start = p;
    while (p < n && text[p] !== '\n') p++;
    return text.slice(start, p).replace(/\s+$/, '');
  };

  while (p < n) {
    while (p < n && isSpace(text[p]!)) p++;
    if (p >= n) break;

    if (text.startsWith('%include', p) && isBlank(text[p + 8])) {
      const at = p;
      if (depth >= MAX_INCLUDE_DEPTH) fail(at, `%include nested deeper than ${MAX_INCLUDE_DEPTH} files`);
      p += 8;
      while (p < n && isBlank(text[p])) p++;
      const name = restOfLine();
      if (name === '') fail(at, '%include without a file name');
      parseFile(includePath(file, name), depth + 1, here, state, out);
      continue;
    }
    if (text[p] === '#' || text[p] === ';') {
      restOfLine();
      continue;
    }
    if (text[p] === '[') {
      const at = p++;
      const start = p;
      while (p < n && text[p] !== ']' && text[p] !== '\n') p++;
      if (text[p] !== ']') fail(at, 'a section header without its closing "]"');
      const name = text.slice(start, p++);
      if (!(SECTIONS as readonly string[]).includes(name)) fail(at, `unknown section [${name}]; PgBouncer knows ${SECTIONS.map((s) => `[${s}]`).join(', ')}`);
      state.section = name as Section;
      if (name === 'pgbouncer' && ++state.pgbouncerHeaders > 1) {
        // PgBouncer sets every [pgbouncer] key to its default at each such header, dropping what came before.
        const dropped = out.filter((e) => e.section === 'pgbouncer');
        for (const e of dropped) out.splice(out.indexOf(e), 1);
      }
      continue;
    }

    const at = p;
    let key: string;
    if (text[p] === "'") {
      // cfparser: a single-quoted key runs to the next quote, no escapes.
      const end = text.indexOf("'", p + 1);
      if (end < 0 || text.lastIndexOf('\n', end) > p) fail(at, 'a quoted key without its closing quote');
      key = text.slice(p + 1, end);
      p = end + 1;
    } else if (text[p] === '"') {
      // PgBouncer's documentation quotes names as SQL identifiers: "my db", "" for a quote.
      key = '';
      for (p++; ; p++) {
        if (p >= n || text[p] === '\n') fail(at, 'a quoted key without its closing quote');
        if (text[p] === '"') {
          if (text[p + 1] !== '"') break;
          p++;
        }
        key += text[p];
      }
      p++;
    } else {
      const start = p;
      while (p < n && /[A-Za-z0-9_.\-*]/.test(text[p]!)) p++;
      key = text.slice(start, p);
    }
    if (key === '') fail(at, 'expected a key (letters, digits, "_", ".", "-", "*", or a quoted name)');
    while (p < n && isBlank(text[p])) p++;
    // The key is not quoted either: a line that is not a setting may be a pasted password.
    if (text[p] !== '=') fail(at, 'expected "=" after the key');
    p++;
    while (p < n && isBlank(text[p])) p++;
    const value = restOfLine();
    if (state.section === null) fail(at, 'a setting comes before any [section]');
    out.push({ section: state.section!, key, value, where: `${file}:${lineAt(at)}` });
  }
}

/** Relative to the including file, as one expects of a ConfigMap; else to the working directory, as PgBouncer does. */
function includePath(from: string, name: string): string {
  if (isAbsolute(name)) return name;
  const besides = resolve(dirname(from), name);
  return existsSync(besides) || !existsSync(name) ? besides : resolve(name);
}

function toLayer(entries: readonly Entry[]): Layer {
  const values: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  for (const { section, key, value, where } of entries) {
    if (section === 'pgbouncer') {
      values[key] = value; // a later line wins, as in PgBouncer
      sources[pathKey(key)] = where;
      continue;
    }
    if (values[section] === undefined) {
      // Null prototype: entry names are whatever the file says (load.ts refuses '__proto__').
      values[section] = Object.create(null);
      sources[pathKey(section)] = where.replace(/:\d+$/, '');
    }
    let entry: unknown;
    try {
      entry = section === 'peers' ? value : parseConnString(value);
    } catch (e) {
      if (!(e instanceof ConnStringError)) throw e;
      throw new ConfigError([`${where}: ${section}.${key}: ${e.message}`]);
    }
    // A later line for the same name replaces the whole entry, as parse_database() starts afresh.
    (values[section] as Record<string, unknown>)[key] = entry;
    sources[pathKey(section, key)] = where;
  }
  return { values, sources };
}

/** A connection string PgBouncer cannot read. Never quotes the text (it may hold a password). */
export class ConnStringError extends Error {
  override name = 'ConnStringError';
}

/**
 * Splits `key=value key='quoted value'` as PgBouncer's cstr_get_pair does:
 * pairs are separated by spaces, a value is single-quoted with '' for a quote
 * (no backslash escapes, unlike libpq), and an empty value is an error.
 * `reserve_pool`, PgBouncer's older name, is read as reserve_pool_size.
 */
export function parseConnString(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const n = text.length;
  let p = 0;
  const skip = (): void => {
    while (text[p] === ' ') p++;
  };
  for (skip(); p < n; skip()) {
    const start = p;
    while (p < n && text[p] !== '=' && text[p] !== ' ') p++;
    let key = text.slice(start, p);
    skip();
    if (text[p] !== '=' || key === '') throw new ConnStringError(`expected key=value at offset ${start}`);
    p++;
    skip();
    let value = '';
    if (text[p] === "'") {
      for (p++; ; p++) {
        if (p >= n) throw new ConnStringError(`unterminated quoted value for "${key}"`);
        if (text[p] === "'") {
          if (text[p + 1] !== "'") break;
          p++;
        }
        value += text[p];
      }
      p++;
    } else {
      const s = p;
      while (p < n && text[p] !== ' ') p++;
      value = text.slice(s, p);
    }
    if (value === '') throw new ConnStringError(`empty value for "${key}"`);
    if (key === 'reserve_pool') key = 'reserve_pool_size';
    out[key] = value; // a repeated key: the last wins, as in PgBouncer
  }
  return out;
}

const isSpace = (c: string): boolean => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\v' || c === '\f';
const isBlank = (c: string | undefined): boolean => c === ' ' || c === '\t';
