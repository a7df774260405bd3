// PgBouncer consults auth_file before auth_query: a user listed there with a
// SCRAM verifier or an md5 hash authenticates against it, and no lookup runs.
// The exchange and the upstream login are the ones an auth_query verifier gets
// (client-auth.ts): SCRAM recovers the ClientKey from the client's proof, so
// the server accepts it only if the file holds the server's own verifier (same
// salt and iterations), as in PgBouncer. A plaintext entry (or a malformed one)
// is not used here: an upstream login never replays a stored password, so that
// user is looked up with auth_query instead (loadConfig warns about them).
import { parseVerifier } from './verifier.js';

/** The verifier auth_file holds for `user`, or null when the user is to be looked up with auth_query. */
export function authFileVerifier(passwords: Readonly<Record<string, string>>, user: string): string | null {
  if (!Object.hasOwn(passwords, user)) return null;
  const secret = passwords[user]!;
  return parseVerifier(secret) === null ? null : secret;
}
