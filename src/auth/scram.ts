// SCRAM-SHA-256 primitives (RFC 5802 §3, RFC 7677): key derivation, nonces,
// attribute syntax and base64/saslname codecs shared by both exchange sides.
// Pure functions over node:crypto; no state, no I/O.
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

/** A stored SCRAM-SHA-256 verifier, decoded (auth/verifier.ts parses the text form). */
export interface ScramVerifier {
  kind: 'scram-sha-256';
  iterations: number;
  salt: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

/** SHA-256 output length; every SCRAM-SHA-256 key and proof has it. */
export const SCRAM_KEY_LEN = 32;
/** Raw nonce bytes before base64, as PostgreSQL's SCRAM_RAW_NONCE_LEN. */
export const SCRAM_RAW_NONCE_LEN = 18;
/** PostgreSQL's SCRAM_DEFAULT_SALT_LEN and default iteration count. */
export const SCRAM_DEFAULT_SALT_LEN = 16;
export const SCRAM_DEFAULT_ITERATIONS = 4096;
/** Upper bound for any SCRAM message we accept; real ones are ~100-200 bytes. */
export const SCRAM_MAX_MESSAGE_LEN = 4096;

export function sha256(data: Buffer | string): Buffer {
  return createHash('sha256').update(data).digest();
}

export function hmac(key: Buffer, data: Buffer | string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

export function xor(a: Buffer, b: Buffer): Buffer {
  if (a.length !== b.length) throw new RangeError('xor: length mismatch');
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** Hi(password, salt, i) of RFC 5802 §2.2 is PBKDF2 with HMAC as the PRF. No SASLprep (see report). */
export function saltedPassword(password: string | Buffer, salt: Buffer, iterations: number): Buffer {
  return pbkdf2Sync(password, salt, iterations, SCRAM_KEY_LEN, 'sha256');
}

// RFC 5802 §3: ClientKey = HMAC(SaltedPassword, "Client Key"), StoredKey = H(ClientKey),
// ServerKey = HMAC(SaltedPassword, "Server Key").
export function clientKey(salted: Buffer): Buffer {
  return hmac(salted, 'Client Key');
}
export function storedKey(clientKeyBytes: Buffer): Buffer {
  return sha256(clientKeyBytes);
}
export function serverKey(salted: Buffer): Buffer {
  return hmac(salted, 'Server Key');
}

/** Base64 of 18 random bytes: 24 printable chars without padding, as PostgreSQL does. */
export function generateNonce(): string {
  return randomBytes(SCRAM_RAW_NONCE_LEN).toString('base64');
}

/** Constant-time equality; unequal lengths are simply unequal (lengths aren't secret here). */
export function constantTimeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict base64 (RFC 5802 §7 "base64"); Buffer.from alone silently skips bad characters. */
export function decodeBase64(text: string): Buffer | null {
  return BASE64_RE.test(text) ? Buffer.from(text, 'base64') : null;
}

/** RFC 5802 §7 "printable": %x21-2B / %x2D-7E, i.e. visible ASCII except ','. Empty is rejected. */
export function isPrintable(text: string): boolean {
  return /^[\x21-\x2b\x2d-\x7e]+$/.test(text);
}

/** RFC 5802 §5.1: ',' and '=' in a saslname are sent as "=2C" and "=3D". */
export function escapeSaslName(name: string): string {
  return name.replace(/=/g, '=3D').replace(/,/g, '=2C');
}

/** Inverse of escapeSaslName; null when '=' is not followed by 2C or 3D (the RFC says fail). */
export function unescapeSaslName(text: string): string | null {
  if (/=(?!2C|3D)/.test(text)) return null;
  return text.replace(/=2C|=3D/g, (m) => (m === '=2C' ? ',' : '='));
}

/** Thrown by parseAttributes; its message is safe to show (no input echoed beyond one sanitized char). */
export class ScramSyntaxError extends Error {
  override name = 'ScramSyntaxError';
}

export interface ScramAttribute {
  key: string;
  value: string;
}

/** One byte as PostgreSQL's sanitize_char prints it: 'c' when visible ASCII, else hex. */
export function sanitizeChar(ch: string | undefined): string {
  if (ch === undefined || ch === '') return 'end of message';
  const code = ch.charCodeAt(0);
  return code >= 0x21 && code <= 0x7e ? `'${ch}'` : `0x${code.toString(16).padStart(2, '0')}`;
}

/**
 * Splits "a=b,c=d" (RFC 5802 §5.1 attr-val list) into ordered attributes.
 * Values may contain '=' but never ','; duplicate keys and empty items are errors.
 */
export function parseAttributes(text: string): ScramAttribute[] {
  if (text === '') throw new ScramSyntaxError('malformed SCRAM message (empty message)');
  const seen = new Set<string>();
  return text.split(',').map((item) => {
    const key = item[0];
    if (key === undefined || !/^[A-Za-z]$/.test(key)) {
      throw new ScramSyntaxError(`malformed SCRAM message (attribute expected, found ${sanitizeChar(key)})`);
    }
    if (item[1] !== '=') throw new ScramSyntaxError(`malformed SCRAM message (expected = in attr ${key})`);
    if (seen.has(key)) throw new ScramSyntaxError(`malformed SCRAM message (duplicate attribute ${key})`);
    seen.add(key);
    return { key, value: item.slice(2) };
  });
}

/** AuthMessage of RFC 5802 §3, as the bytes both sides sign. Strings are latin1 so bytes round-trip. */
export function authMessage(clientFirstBare: string, serverFirst: string, clientFinalWithoutProof: string): Buffer {
  return Buffer.from(`${clientFirstBare},${serverFirst},${clientFinalWithoutProof}`, 'latin1');
}

/** Builds a verifier as PostgreSQL stores it (random 16-byte salt by default). For tests and tooling. */
export function buildScramVerifier(
  password: string | Buffer,
  salt: Buffer = randomBytes(SCRAM_DEFAULT_SALT_LEN),
  iterations: number = SCRAM_DEFAULT_ITERATIONS,
): ScramVerifier {
  if (!Number.isInteger(iterations) || iterations < 1) throw new RangeError('iterations must be a positive integer');
  const salted = saltedPassword(password, salt, iterations);
  return {
    kind: 'scram-sha-256',
    iterations,
    salt: Buffer.from(salt),
    storedKey: storedKey(clientKey(salted)),
    serverKey: serverKey(salted),
  };
}

/** Serializes a verifier in pg_authid's "SCRAM-SHA-256$iter:salt$StoredKey:ServerKey" form. */
export function formatScramVerifier(v: ScramVerifier): string {
  const b64 = (b: Buffer) => b.toString('base64');
  return `SCRAM-SHA-256$${v.iterations}:${b64(v.salt)}$${b64(v.storedKey)}:${b64(v.serverKey)}`;
}
