// Authenticates a client against the verifier auth_query returned, the way
// PostgreSQL itself would: SCRAM-SHA-256 for SCRAM verifiers (and for unknown
// users, with a mock exchange), MD5 for md5 verifiers. Yields what the server
// login needs: the recovered ClientKey, or the md5 hash.
// https://www.postgresql.org/docs/current/sasl-authentication.html
import { randomBytes } from 'node:crypto';
import * as backend from '../protocol/backend.js';
import type { FrameQueue } from '../protocol/frame-queue.js';
import { fatal, passwordFailed, SqlState } from '../protocol/pg-error.js';
import type { ServerCredentials } from '../pool/server-login.js';
import { md5Check } from './md5.js';
import { SCRAM_MAX_MESSAGE_LEN } from './scram.js';
import { ScramServerExchange } from './scram-server.js';
import type { Verifier } from './verifier.js';

const PASSWORD_MESSAGE = 0x70; // 'p': PasswordMessage, SASLInitialResponse and SASLResponse share it

// Body caps, checked before anything is decoded; a longer message ends the login with 08P01.
/** SASLInitialResponse: a mechanism name (SCRAM-SHA-256-PLUS is the longest we offer) and NUL, Int32 length, client-first-message. */
export const SASL_INITIAL_RESPONSE_MAX = 32 + 4 + SCRAM_MAX_MESSAGE_LEN;
/** SASLResponse: the client-final-message alone. */
export const SASL_RESPONSE_MAX = SCRAM_MAX_MESSAGE_LEN;
/** md5 PasswordMessage: "md5" + 32 hex digits + NUL. */
export const MD5_PASSWORD_MESSAGE_MAX = 36;

export interface ClientAuthIo {
  write(buf: Buffer): void;
  frames: FrameQueue;
  timeoutMs: number;
}

/** Runs the exchange; resolves with server credentials or rejects with the PgError to send. */
export async function authenticateClient(io: ClientAuthIo, user: string, verifier: Verifier | null, channelBinding: Buffer | null): Promise<ServerCredentials> {
  if (verifier?.kind === 'md5') return md5(io, user, verifier.hash);
  return scram(io, user, verifier, channelBinding);
}

async function scram(io: ClientAuthIo, user: string, verifier: Extract<Verifier, { kind: 'scram-sha-256' }> | null, channelBinding: Buffer | null): Promise<ServerCredentials> {
  const exchange = new ScramServerExchange(verifier, { channelBinding, user });
  io.write(backend.authenticationSasl(exchange.mechanisms()));

  const initial = await passwordMessage(io, SASL_INITIAL_RESPONSE_MAX, 'SASLInitialResponse');
  const { mechanism, data } = decodeSaslInitialResponse(initial);
  const first = exchange.clientFirst(mechanism, data);
  if (!first.ok) throw first.reason === 'auth' ? passwordFailed(user) : fatal(SqlState.protocolViolation, first.message);
  io.write(backend.authenticationSaslContinue(first.value));

  const final = exchange.clientFinal(await passwordMessage(io, SASL_RESPONSE_MAX, 'SASLResponse'));
  if (!final.ok) throw final.reason === 'auth' ? passwordFailed(user) : fatal(SqlState.protocolViolation, final.message);
  io.write(backend.authenticationSaslFinal(final.value.serverFinal));
  return { kind: 'scram', clientKey: final.value.clientKey, serverKey: verifier!.serverKey };
}

async function md5(io: ClientAuthIo, user: string, hash: string): Promise<ServerCredentials> {
  const salt = randomBytes(4);
  io.write(backend.authenticationMd5(salt));
  const body = await passwordMessage(io, MD5_PASSWORD_MESSAGE_MAX, 'password');
  const end = body.indexOf(0);
  const response = body.toString('utf8', 0, end < 0 ? body.length : end);
  if (!md5Check(hash, salt, response)) throw passwordFailed(user);
  return { kind: 'md5', hash };
}

async function passwordMessage(io: ClientAuthIo, maxBody: number, what: string): Promise<Buffer> {
  const frame = await io.frames.next(io.timeoutMs);
  if (frame.type !== PASSWORD_MESSAGE) {
    throw fatal(SqlState.protocolViolation, `expected password response, got message type ${frame.type}`);
  }
  if (frame.body.length > maxBody) throw fatal(SqlState.protocolViolation, `${what} message too long (${frame.body.length} bytes, at most ${maxBody})`);
  return frame.body;
}

/** SASLInitialResponse: mechanism name, Int32 length of data (-1 for none), data. */
function decodeSaslInitialResponse(body: Buffer): { mechanism: string; data: Buffer } {
  const nameEnd = body.indexOf(0);
  if (nameEnd < 0 || nameEnd + 5 > body.length) throw fatal(SqlState.protocolViolation, 'malformed SASLInitialResponse message');
  const mechanism = body.toString('utf8', 0, nameEnd);
  const length = body.readInt32BE(nameEnd + 1);
  const start = nameEnd + 5;
  if (length === -1) return { mechanism, data: Buffer.alloc(0) };
  if (length < 0 || start + length !== body.length) throw fatal(SqlState.protocolViolation, 'malformed SASLInitialResponse message');
  return { mechanism, data: body.subarray(start) };
}
