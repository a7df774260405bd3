// PostgreSQL md5 password authentication (protocol docs, protocol-flow.html "AuthenticationMD5Password"):
// the client sends "md5" + md5hex(md5hex(password + user) + salt). Because the inner
// hash is exactly what pg_authid stores, the stored hash is enough to answer upstream.
import { createHash } from 'node:crypto';
import { constantTimeEqual } from './scram.js';

function md5hex(data: Buffer | string): string {
  return createHash('md5').update(data).digest('hex');
}

/** Response to AuthenticationMD5Password: "md5" + md5hex(hashHex + salt). */
export function md5Response(hashHex: string, salt: Buffer): string {
  return 'md5' + md5hex(Buffer.concat([Buffer.from(hashHex, 'latin1'), salt]));
}

/** Constant-time check of a client's PasswordMessage (without the trailing NUL) against the stored hash. */
export function md5Check(hashHex: string, salt: Buffer, response: string): boolean {
  return constantTimeEqual(Buffer.from(md5Response(hashHex, salt), 'latin1'), Buffer.from(response, 'utf8'));
}

/** "md5" + md5hex(password + user), as PostgreSQL stores it. For tests. */
export function md5Verifier(password: string, user: string): string {
  return 'md5' + md5hex(Buffer.from(password + user, 'utf8'));
}
