// authenticateClient's caps on what a stranger may send before logging in:
// SASLInitialResponse, SASLResponse and the md5 PasswordMessage each have a
// bound, and a longer message ends the login with 08P01 before it is decoded.
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { MD5_PASSWORD_MESSAGE_MAX, SASL_INITIAL_RESPONSE_MAX, SASL_RESPONSE_MAX, authenticateClient } from '../../../src/auth/client-auth.js';
import { md5Response, md5Verifier } from '../../../src/auth/md5.js';
import { SCRAM_MAX_MESSAGE_LEN, buildScramVerifier } from '../../../src/auth/scram.js';
import { parseVerifier, type Md5Verifier } from '../../../src/auth/verifier.js';
import { FrameQueue } from '../../../src/protocol/frame-queue.js';
import { PgError } from '../../../src/protocol/pg-error.js';
import { typed } from '../protocol/messages.js';
import { PasswordClient } from './password-client.js';

const PASSWORD = 'pw-for-caps';
const scramVerifier = buildScramVerifier(PASSWORD, randomBytes(16), 16);
const md5 = parseVerifier(md5Verifier(PASSWORD, 'alice')) as Md5Verifier;

/** A client connection: what the exchange writes, and a way to send it frames. */
function connection() {
  const socket = new PassThrough();
  const sent: Buffer[] = [];
  const frames = new FrameQueue(socket, 16 * 1024);
  return { io: { write: (b: Buffer) => void sent.push(b), frames, timeoutMs: 2000 }, send: (b: Buffer) => socket.write(b), sent };
}

function saslInitial(mechanism: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeInt32BE(data.length);
  return typed('p', Buffer.concat([Buffer.from(`${mechanism}\0`), len, data]));
}

async function refusal(p: Promise<unknown>): Promise<PgError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PgError);
  return err as PgError;
}

describe('authenticateClient: message caps', () => {
  it('bounds SASLInitialResponse to a mechanism name, its length and a SCRAM message', () => {
    expect(SASL_INITIAL_RESPONSE_MAX).toBe(32 + 4 + SCRAM_MAX_MESSAGE_LEN);
    expect(SASL_RESPONSE_MAX).toBe(SCRAM_MAX_MESSAGE_LEN);
    expect(MD5_PASSWORD_MESSAGE_MAX).toBe(36);
  });

  it('ends the login with 08P01 on a SASLInitialResponse over the cap', async () => {
    const c = connection();
    const done = authenticateClient(c.io, 'alice', scramVerifier, null);
    const data = Buffer.alloc(SASL_INITIAL_RESPONSE_MAX, 0x61);
    c.send(saslInitial('SCRAM-SHA-256', data));
    const err = await refusal(done);
    expect(err.code).toBe('08P01');
    expect(err.message).toBe(`SASLInitialResponse message too long (${SASL_INITIAL_RESPONSE_MAX + 18} bytes, at most ${SASL_INITIAL_RESPONSE_MAX})`);
  });

  it('ends the login with 08P01 on a SASLResponse over the cap, and accepts a real one', async () => {
    for (const oversize of [true, false]) {
      const c = connection();
      const client = new PasswordClient(PASSWORD, { nonce: 'cap-test-nonce' });
      const done = authenticateClient(c.io, 'alice', scramVerifier, null);
      c.send(saslInitial('SCRAM-SHA-256', client.first()));
      // Wait for AuthenticationSASLContinue (R, code 11): the second message we wrote.
      while (c.sent.length < 2) await new Promise((r) => setImmediate(r));
      const serverFirst = c.sent[1]!.subarray(9);
      const final = oversize ? Buffer.alloc(SASL_RESPONSE_MAX + 1, 0x61) : client.final(serverFirst);
      c.send(typed('p', final));
      if (oversize) expect(await refusal(done)).toMatchObject({ code: '08P01', message: `SASLResponse message too long (${SASL_RESPONSE_MAX + 1} bytes, at most ${SASL_RESPONSE_MAX})` });
      else expect(await done).toMatchObject({ kind: 'scram' });
    }
  });

  it('caps the md5 PasswordMessage at "md5" + 32 hex digits + NUL', async () => {
    const verifier = md5;
    const long = connection();
    const refused = authenticateClient(long.io, 'alice', verifier, null);
    long.send(typed('p', Buffer.alloc(37, 0x61)));
    expect(await refusal(refused)).toMatchObject({ code: '08P01', message: 'password message too long (37 bytes, at most 36)' });

    const ok = connection();
    const accepted = authenticateClient(ok.io, 'alice', verifier, null);
    while (ok.sent.length < 1) await new Promise((r) => setImmediate(r));
    const salt = ok.sent[0]!.subarray(9, 13); // AuthenticationMD5Password: R, length, code 5, salt
    const answer = Buffer.from(`${md5Response(md5.hash, salt)}\0`);
    expect(answer.length).toBe(MD5_PASSWORD_MESSAGE_MAX);
    ok.send(typed('p', answer));
    expect(await accepted).toEqual({ kind: 'md5', hash: md5.hash });
  });
});
