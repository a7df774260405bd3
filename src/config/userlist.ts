// Reads PgBouncer's auth_file (userlist.txt) as src/loader.c load_auth_file()
// does: lines of `"user" "secret"`, "" for a quote inside a field, anything after
// the second field ignored, `;` lines are comments. The secret is a plaintext
// password, an md5 hash or a SCRAM verifier. Errors name the file and line,
// never the text.
import { readFileSync } from 'node:fs';
import { ConfigError } from './schema.js';

/** User name → secret, in file order; a later line for the same user wins. */
export type Userlist = Record<string, string>;

export function readUserlist(file: string, key = 'auth_file'): Userlist {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new ConfigError([`${key}: cannot read ${JSON.stringify(file)}: ${why}`]);
  }
  return parseUserlist(text, file);
}

export function parseUserlist(text: string, file: string): Userlist {
  const users: Userlist = Object.create(null);
  const lines = text.split('\n');
  for (const [i, raw] of lines.entries()) {
    const line = raw.replace(/^\s+/, '');
    if (line === '' || line.startsWith(';')) continue;
    const fields = quotedFields(line);
    if (fields === null) {
      throw new ConfigError([`${file}:${i + 1}: expected "user" "password" (both in double quotes, "" for a quote inside; ";" starts a comment line)`]);
    }
    const [user, secret] = fields;
    if (user === '') throw new ConfigError([`${file}:${i + 1}: empty user name`]);
    users[user] = secret;
  }
  return users;
}

/** The first two double-quoted fields of a line, or null when there are not two. */
function quotedFields(line: string): [string, string] | null {
  if (!line.startsWith('"')) return null;
  const user = field(line, 1);
  if (user === null) return null;
  // Whatever stands between the two fields is skipped, as find_quote() does.
  const open = line.indexOf('"', user.end + 1);
  if (open < 0) return null;
  const secret = field(line, open + 1);
  if (secret === null) return null;
  return [user.value, secret.value];
}

/** A field from `start` (just after its opening quote) to its closing quote; "" is a quote. */
function field(line: string, start: number): { value: string; end: number } | null {
  let value = '';
  for (let p = start; p < line.length; p++) {
    if (line[p] !== '"') {
      value += line[p];
      continue;
    }
    if (line[p + 1] !== '"') return { value, end: p };
    value += '"';
    p++;
  }
  return null;
}

/**
 * What an auth_file secret is, by its form, as PostgreSQL's get_password_type()
 * tells them apart: "md5" and 32 hex digits, "SCRAM-SHA-256$…", else plaintext.
 */
export function secretKind(secret: string): 'md5' | 'scram' | 'plaintext' {
  if (/^md5[0-9a-f]{32}$/.test(secret)) return 'md5';
  if (secret.startsWith('SCRAM-SHA-256$')) return 'scram';
  return 'plaintext';
}
