// serverLogin, the upstream leg, against a scripted server that runs the real
// ScramServerExchange: AuthenticationOk counts only after a verified server
// signature, and the optional superuser-membership check after ReadyForQuery.
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { buildScramVerifier, clientKey, saltedPassword, serverKey } from '../../../src/auth/scram.js';
import { ScramServerExchange } from '../../../src/auth/scram-server.js';
import * as backend from '../../../src/protocol/backend.js';
import { FrameQueue } from '../../../src/protocol/frame-queue.js';
import { SUPERUSER_MEMBERSHIP_QUERY, ServerLoginError, serverLogin, type LoginResult, type ServerCredentials } from '../../../src/pool/server-login.js';

const PASSWORD = 'upstream-pw';
const SALT = randomBytes(16);
const ITERATIONS = 16;
const salted = saltedPassword(PASSWORD, SALT, ITERATIONS);
const scramCredentials: ServerCredentials = { kind: 'scram', clientKey: clientKey(salted), serverKey: serverKey(salted) };
const verifier = buildScramVerifier(PASSWORD, SALT, ITERATIONS);

/** A scripted upstream: what serverLogin writes arrives in `fromClient`; `send` answers. */
function upstream() {
  const socket = new PassThrough();
  const frames = new FrameQueue(socket, 1 << 20);
  const written: Buffer[] = [];
  const waiters: Array<() => void> = [];
  const write = (b: Buffer): void => {
    written.push(b);
    for (const w of waiters.splice(0)) w();
  };
  /** The n-th message serverLogin wrote (0 = StartupMessage), once it is there. */
  const fromClient = async (n: number): Promise<Buffer> => {
    while (written.length <= n) await new Promise<void>((r) => waiters.push(r));
    return written[n]!;
  };
  return { frames, write, written, fromClient, send: (...bufs: Buffer[]) => socket.write(Buffer.concat(bufs)) };
}

const welcome = (superuser: 'on' | 'off') => [backend.parameterStatus('is_superuser', superuser), backend.backendKeyData(7, 8), backend.readyForQuery('I')];

/** Plays the server's SCRAM side up to (not including) SASLFinal; returns the server-final-message. */
async function scramUpTo(u: ReturnType<typeof upstream>): Promise<Buffer> {
  const server = new ScramServerExchange(verifier);
  u.send(backend.authenticationSasl(['SCRAM-SHA-256']));
  // SASLInitialResponse: 'p', length, "SCRAM-SHA-256\0", Int32 length, client-first-message.
  const initial = await u.fromClient(1);
  const nameEnd = initial.indexOf(0, 5);
  const first = server.clientFirst('SCRAM-SHA-256', initial.subarray(nameEnd + 5));
  if (!first.ok) throw new Error(first.message);
  u.send(backend.authenticationSaslContinue(first.value));
  const response = await u.fromClient(2);
  const final = server.clientFinal(response.subarray(5));
  if (!final.ok) throw new Error(final.message);
  return final.value.serverFinal;
}

async function loginError(p: Promise<LoginResult>): Promise<ServerLoginError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ServerLoginError);
  return err as ServerLoginError;
}

describe('serverLogin: SCRAM must end in a verified server signature', () => {
  it('logs in when SASLFinal carries the right signature and AuthenticationOk follows', async () => {
    const u = upstream();
    const login = serverLogin(u.write, u.frames, { user: 'alice', database: 'app' }, scramCredentials, 2000);
    const serverFinal = await scramUpTo(u);
    u.send(backend.authenticationSaslFinal(serverFinal), backend.authenticationOk(), ...welcome('off'));
    expect(await login).toMatchObject({ processId: 7, secretKey: 8, superuserMember: null });
  });

  it('refuses AuthenticationOk sent instead of SASLFinal, after SASLContinue', async () => {
    const u = upstream();
    const login = serverLogin(u.write, u.frames, { user: 'alice', database: 'app' }, scramCredentials, 2000);
    await scramUpTo(u);
    u.send(backend.authenticationOk(), ...welcome('off'));
    expect((await loginError(login)).message).toMatch(/AuthenticationOk before a valid SCRAM server signature/);
  });

  it('refuses AuthenticationOk right after SASL started (before SASLContinue)', async () => {
    const u = upstream();
    const login = serverLogin(u.write, u.frames, { user: 'alice', database: 'app' }, scramCredentials, 2000);
    u.send(backend.authenticationSasl(['SCRAM-SHA-256']));
    await u.fromClient(1);
    u.send(backend.authenticationOk(), ...welcome('off'));
    expect((await loginError(login)).message).toMatch(/before a valid SCRAM server signature/);
  });

  it('refuses a SASLFinal with a wrong signature', async () => {
    const u = upstream();
    const login = serverLogin(u.write, u.frames, { user: 'alice', database: 'app' }, scramCredentials, 2000);
    await scramUpTo(u);
    u.send(backend.authenticationSaslFinal(Buffer.from(`v=${randomBytes(32).toString('base64')}`)), backend.authenticationOk(), ...welcome('off'));
    await expect(login).rejects.toThrow(/invalid SCRAM server signature/);
  });

  it('still accepts a server that trusts the user and never starts SASL', async () => {
    const u = upstream();
    const login = serverLogin(u.write, u.frames, { user: 'alice', database: 'app' }, scramCredentials, 2000);
    u.send(backend.authenticationOk(), ...welcome('off'));
    expect(await login).toMatchObject({ processId: 7 });
  });
});

describe('serverLogin: superuser membership check', () => {
  const rows = (value: string) => [
    backend.rowDescription([{ name: 'exists', typeOid: 16, typeLength: 1 }]),
    backend.dataRow([value]),
    backend.commandComplete('SELECT 1'),
    backend.readyForQuery('I'),
  ];

  it.each([
    ['t', true],
    ['f', false],
  ])('runs one query after ReadyForQuery when asked and reports %s as superuserMember %s', async (value, expected) => {
    const u = upstream();
    const login = serverLogin(u.write, u.frames, { user: 'alice', database: 'app' }, { kind: 'none' }, 2000, { checkSuperuserMembership: true });
    u.send(backend.authenticationOk(), ...welcome('off'));
    const q = await u.fromClient(1);
    expect(String.fromCharCode(q[0]!)).toBe('Q');
    expect(q.toString('utf8', 5, q.length - 1)).toBe(SUPERUSER_MEMBERSHIP_QUERY);
    u.send(...rows(value));
    expect((await login).superuserMember).toBe(expected);
    expect(u.written).toHaveLength(2);
  });

  it('asks nothing when not asked, or when the role is a superuser already', async () => {
    for (const [options, superuser] of [
      [{}, 'off'],
      [{ checkSuperuserMembership: true }, 'on'],
    ] as const) {
      const u = upstream();
      const login = serverLogin(u.write, u.frames, { user: 'alice', database: 'app' }, { kind: 'none' }, 2000, options);
      u.send(backend.authenticationOk(), ...welcome(superuser));
      expect((await login).superuserMember).toBeNull();
      expect(u.written).toHaveLength(1);
    }
  });

  it('fails the login when the check errors', async () => {
    const u = upstream();
    const login = serverLogin(u.write, u.frames, { user: 'alice', database: 'app' }, { kind: 'none' }, 2000, { checkSuperuserMembership: true });
    u.send(backend.authenticationOk(), ...welcome('off'));
    await u.fromClient(1);
    u.send(backend.noticeMessage('E', { severity: 'ERROR', code: '42501', message: 'permission denied for view pg_roles' }), backend.readyForQuery('I'));
    expect((await loginError(login)).fields?.get('C')).toBe('42501');
  });

  it('queries pg_catalog by qualified names, so the role\'s search_path cannot substitute them', () => {
    expect(SUPERUSER_MEMBERSHIP_QUERY).toContain('pg_catalog.pg_roles');
    expect(SUPERUSER_MEMBERSHIP_QUERY).toContain('pg_catalog.pg_has_role(CURRENT_USER');
  });
});
