// Logging in to the upstream PostgreSQL as the client's user without knowing
// its password: SCRAM with the ClientKey recovered from the client's proof, md5
// with the stored hash, or nothing when the server trusts us. Over TLS, SCRAM
// binds to the server's certificate (SCRAM-SHA-256-PLUS) when the server offers
// it: we hold ClientKey, so the proof can cover any channel binding data.
// https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
import { serialize } from 'pg-protocol';
import { decodeDataRow } from '../protocol/backend.js';
import { md5Response } from '../auth/md5.js';
import { ScramClientExchange } from '../auth/scram-client.js';
import type { Frame, FrameQueue } from '../protocol/frame-queue.js';

export type ServerCredentials =
  | { kind: 'scram'; clientKey: Buffer; serverKey: Buffer }
  | { kind: 'md5'; hash: string }
  | { kind: 'none' };

/** The server refused the login; `fields` are its ErrorResponse fields when it sent one. */
export class ServerLoginError extends Error {
  constructor(
    message: string,
    readonly fields: Map<string, string> | null = null,
  ) {
    super(message);
  }
}

export interface LoginResult {
  params: Map<string, string>;
  processId: number;
  secretKey: number;
  /**
   * Whether the login role is a member of a superuser role, so that SET ROLE
   * makes it one: answered only when `checkSuperuserMembership` was asked and
   * is_superuser is off; null when not asked.
   */
  superuserMember: boolean | null;
  /** connect_query's error, when it failed (ignored otherwise, as PgBouncer does; the caller logs it). */
  connectQueryError: string | null;
}

export interface ServerLoginOptions {
  /** After the first ReadyForQuery, ask whether the role can become a superuser (one extra round trip). */
  checkSuperuserMembership?: boolean;
  /** tls-server-end-point data of the server's certificate when the connection is TLS (SCRAM channel binding). */
  endpointHash?: Buffer | null;
  /** PgBouncer's connect_query: run once after login, before the server is first used. */
  connectQuery?: string | null;
}

/**
 * Membership in any superuser role, direct or through other roles ('MEMBER'
 * is the widest test, whatever INHERIT/SET say). Schema-qualified so that the
 * login role's own search_path cannot substitute pg_has_role.
 */
export const SUPERUSER_MEMBERSHIP_QUERY =
  "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolsuper AND pg_catalog.pg_has_role(CURRENT_USER, r.oid, 'MEMBER'))";

/** Decodes ErrorResponse/NoticeResponse fields (type byte → value). */
export function decodeErrorFields(body: Buffer): Map<string, string> {
  const fields = new Map<string, string>();
  let pos = 0;
  while (pos < body.length && body[pos] !== 0) {
    const end = body.indexOf(0, pos + 1);
    if (end < 0) break;
    fields.set(String.fromCharCode(body[pos]!), body.toString('utf8', pos + 1, end));
    pos = end + 1;
  }
  return fields;
}

function cstring(body: Buffer, start: number): [string, number] {
  const end = body.indexOf(0, start);
  const stop = end < 0 ? body.length : end;
  return [body.toString('utf8', start, stop), stop + 1];
}

/**
 * StartupMessage, protocol 3.0 (protocol-message-formats.html). Not
 * pg-protocol's serialize.startup: that one appends client_encoding=UTF8 after
 * our parameters, and the last value wins, so a database's client_encoding
 * would be lost. UTF8 stays the default when none is given.
 */
export function startupMessage(params: Readonly<Record<string, string>>): Buffer {
  const pairs: Buffer[] = [];
  for (const [name, value] of Object.entries({ client_encoding: 'UTF8', ...params })) pairs.push(Buffer.from(`${name}\0${value}\0`, 'utf8'));
  const body = Buffer.concat([...pairs, Buffer.from([0])]);
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0); // the length counts itself
  head.writeInt32BE(196608, 4); // 3.0
  return Buffer.concat([head, body]);
}

/** Runs the startup exchange up to the first ReadyForQuery. */
export async function serverLogin(
  write: (buf: Buffer) => void,
  frames: FrameQueue,
  startup: Record<string, string>,
  credentials: ServerCredentials,
  timeoutMs: number,
  options: ServerLoginOptions = {},
): Promise<LoginResult> {
  write(startupMessage(startup));
  const params = new Map<string, string>();
  let processId = 0;
  let secretKey = 0;
  let scram: ScramClientExchange | null = null;
  for (;;) {
    const f: Frame = await frames.next(timeoutMs);
    switch (String.fromCharCode(f.type)) {
      case 'R':
        scram = authenticate(f.body, credentials, scram, write, options.endpointHash ?? null);
        break;
      case 'S': {
        const [name, next] = cstring(f.body, 0);
        params.set(name, cstring(f.body, next)[0]);
        break;
      }
      case 'K':
        processId = f.body.readInt32BE(0);
        secretKey = f.body.readInt32BE(4);
        break;
      case 'Z': {
        const connectQueryError = options.connectQuery ? await runConnectQuery(write, frames, options.connectQuery, params, timeoutMs) : null;
        const ask = options.checkSuperuserMembership === true && params.get('is_superuser') !== 'on';
        const superuserMember = ask ? await querySuperuserMembership(write, frames, timeoutMs) : null;
        return { params, processId, secretKey, superuserMember, connectQueryError };
      }
      case 'E': {
        const fields = decodeErrorFields(f.body);
        throw new ServerLoginError(fields.get('M') ?? 'login refused', fields);
      }
      case 'N':
      case 'v':
        break; // notices and protocol negotiation need no answer here
      default:
        throw new ServerLoginError(`unexpected message ${JSON.stringify(String.fromCharCode(f.type))} during server login`);
    }
  }
}

/**
 * Runs connect_query (simple protocol, several statements allowed), keeping the
 * parameters it changes; resolves at its ReadyForQuery with its first error's
 * message, or null. Rows and notices are dropped.
 */
async function runConnectQuery(write: (buf: Buffer) => void, frames: FrameQueue, sql: string, params: Map<string, string>, timeoutMs: number): Promise<string | null> {
  write(serialize.query(sql));
  let error: string | null = null;
  for (;;) {
    const f = await frames.next(timeoutMs);
    switch (String.fromCharCode(f.type)) {
      case 'Z':
        // Left inside a transaction block, the server could never be handed out clean.
        if (f.body[0] !== 0x49) throw new ServerLoginError('connect_query left a transaction open');
        return error;
      case 'E':
        error ??= decodeErrorFields(f.body).get('M') ?? 'error';
        break;
      case 'S': {
        const [name, next] = cstring(f.body, 0);
        params.set(name, cstring(f.body, next)[0]);
        break;
      }
      case 'G': // CopyIn-, CopyOut-, CopyBothResponse: connect_query is no place for COPY
      case 'H':
      case 'W':
        throw new ServerLoginError('connect_query started a COPY');
      default:
        break; // RowDescription, DataRow, CommandComplete, EmptyQueryResponse, NoticeResponse
    }
  }
}

/** Runs SUPERUSER_MEMBERSHIP_QUERY on the fresh connection; resolves at its ReadyForQuery. */
async function querySuperuserMembership(write: (buf: Buffer) => void, frames: FrameQueue, timeoutMs: number): Promise<boolean> {
  write(serialize.query(SUPERUSER_MEMBERSHIP_QUERY));
  let answer: string | null = null;
  for (;;) {
    const f = await frames.next(timeoutMs);
    switch (String.fromCharCode(f.type)) {
      case 'D': {
        const columns = decodeDataRow(f.body);
        if (columns.length !== 1 || columns[0] == null) throw new ServerLoginError('unexpected answer to the superuser membership check');
        answer = columns[0];
        break;
      }
      case 'Z':
        if (answer === null) throw new ServerLoginError('no answer to the superuser membership check');
        return answer === 't';
      case 'E': {
        const fields = decodeErrorFields(f.body);
        throw new ServerLoginError(`superuser membership check failed: ${fields.get('M') ?? 'error'}`, fields);
      }
      case 'T': // RowDescription
      case 'C': // CommandComplete
      case 'N':
      case 'S':
        break;
      default:
        throw new ServerLoginError(`unexpected message ${JSON.stringify(String.fromCharCode(f.type))} during the superuser membership check`);
    }
  }
}

function authenticate(body: Buffer, creds: ServerCredentials, scram: ScramClientExchange | null, write: (b: Buffer) => void, endpointHash: Buffer | null): ScramClientExchange | null {
  const code = body.readInt32BE(0);
  switch (code) {
    case 0: // AuthenticationOk
      // Once SCRAM started, only a verified server signature proves the server knows the verifier;
      // an Ok before it could come from anyone in the path who skipped the proof.
      if (scram && !scram.serverVerified) throw new ServerLoginError('the server reported AuthenticationOk before a valid SCRAM server signature; refusing the login');
      return scram;
    case 5: {
      if (creds.kind !== 'md5') throw new ServerLoginError(missing('md5', creds));
      write(serialize.password(md5Response(creds.hash, body.subarray(4, 8))));
      return null;
    }
    case 10: {
      const mechanisms: string[] = [];
      let pos = 4;
      while (pos < body.length && body[pos] !== 0) {
        const [m, next] = cstring(body, pos);
        mechanisms.push(m);
        pos = next;
      }
      const plus = endpointHash !== null && mechanisms.includes('SCRAM-SHA-256-PLUS');
      if (!plus && !mechanisms.includes('SCRAM-SHA-256')) throw new ServerLoginError(`server offers no SASL mechanism we support (${mechanisms.join(', ')})`);
      if (creds.kind !== 'scram') throw new ServerLoginError(missing('SCRAM-SHA-256', creds));
      const channelBinding = plus ? { kind: 'tls-server-end-point' as const, data: endpointHash } : endpointHash !== null ? { kind: 'unused' as const } : { kind: 'none' as const };
      const exchange = new ScramClientExchange(creds, { channelBinding });
      write(serialize.sendSASLInitialResponseMessage(exchange.mechanism, exchange.clientFirst().toString('utf8')));
      return exchange;
    }
    case 11:
      if (!scram) throw new ServerLoginError('SASL continue without a SASL exchange');
      write(serialize.sendSCRAMClientFinalMessage(scram.serverFirst(body.subarray(4)).toString('utf8')));
      return scram;
    case 12:
      if (!scram) throw new ServerLoginError('SASL final without a SASL exchange');
      scram.serverFinal(body.subarray(4));
      return scram;
    case 3:
      throw new ServerLoginError('the server asks for a cleartext password, which pg-ingress never holds; use scram-sha-256 or md5 in pg_hba.conf');
    default:
      throw new ServerLoginError(`the server asks for an authentication method pg-ingress does not support (code ${code})`);
  }
}

function missing(method: string, creds: ServerCredentials): string {
  const have = creds.kind === 'none' ? 'no verifier' : `a ${creds.kind} verifier`;
  return `the server asks for ${method} authentication but the user has ${have}; an md5-stored password cannot log in where pg_hba.conf says scram-sha-256 (reset the password with password_encryption = scram-sha-256)`;
}
