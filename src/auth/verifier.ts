// Parses the password verifiers PostgreSQL keeps in pg_authid.rolpassword (and
// pg_shadow.passwd), as returned by the auth_query. Mirrors get_password_type()
// and parse_scram_secret() in src/backend/libpq/{crypt,auth-scram}.c.
import { SCRAM_KEY_LEN, decodeBase64, type ScramVerifier } from './scram.js';

export type { ScramVerifier } from './scram.js';

export interface Md5Verifier {
  kind: 'md5';
  /** The 32 lowercase hex chars after the "md5" prefix. */
  hash: string;
}

export type Verifier = ScramVerifier | Md5Verifier;

// PostgreSQL's MD5_PASSWD_CHARSET is lowercase hex only.
const MD5_RE = /^md5([0-9a-f]{32})$/;
// "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>" (RFC 5803 layout).
const SCRAM_RE = /^SCRAM-SHA-256\$([^:$]+):([^:$]+)\$([^:$]+):([^:$]+)$/;
// Stricter than strtol: positive decimal that fits in PostgreSQL's int.
const ITER_RE = /^[1-9][0-9]{0,9}$/;
const INT32_MAX = 2 ** 31 - 1;

/**
 * Returns null for null, plaintext or malformed input. Never throws and never
 * echoes the input, so a verifier can't leak through an error path.
 */
export function parseVerifier(password: string | null | undefined): Verifier | null {
  if (typeof password !== 'string') return null;

  const md5 = MD5_RE.exec(password);
  if (md5) return { kind: 'md5', hash: md5[1]! };

  const m = SCRAM_RE.exec(password);
  if (!m) return null;
  const [, iterText, saltText, storedText, serverText] = m as unknown as [string, string, string, string, string];

  if (!ITER_RE.test(iterText)) return null;
  const iterations = Number(iterText);
  if (iterations > INT32_MAX) return null;

  const salt = decodeBase64(saltText);
  const storedKey = decodeBase64(storedText);
  const serverKey = decodeBase64(serverText);
  if (!salt || salt.length === 0) return null;
  if (!storedKey || storedKey.length !== SCRAM_KEY_LEN) return null;
  if (!serverKey || serverKey.length !== SCRAM_KEY_LEN) return null;

  return { kind: 'scram-sha-256', iterations, salt, storedKey, serverKey };
}
