// One upstream connection to PostgreSQL ("server", as in PgBouncer): connects,
// logs in, then relays raw chunks to whichever client owns it while watching
// only what pooling needs: ReadyForQuery status, ParameterStatus, and exactly
// which answers it still owes (protocol/outstanding.ts).
//
// States (one field, changed only by move()):
//   ready     logged in, nobody attached, nothing of ours running: the pool's to give
//   owned     attached to a client, whose bytes it relays
//   internal  running a query of our own (reset, check, parameters); results swallowed
//   closed    gone or going; never handed out again
import net from 'node:net';
import { serialize } from 'pg-protocol';
import { decodeDataRow } from '../protocol/backend.js';
import { FrameBatch } from '../protocol/frame-batch.js';
import { Framer, type FrameSink } from '../protocol/framer.js';
import { FrameQueue, FrameTimeoutError } from '../protocol/frame-queue.js';
import { Outstanding } from '../protocol/outstanding.js';
import type { HostRotation } from './hosts.js';
import { decodeErrorFields, serverLogin, ServerLoginError, type LoginResult, type ServerCredentials } from './server-login.js';
import { negotiateServerTls, ServerTlsError, type ServerTlsSettings } from './server-tls.js';
import { Answer, ServerStatements } from './server-statements.js';

export interface ServerAddress {
  host: string;
  port: number;
  dbname: string;
  user: string;
}

/** What an attached client does with the server's bytes. */
export interface ServerOwner {
  /** A raw chunk from the server, to forward as is. */
  onServerData(chunk: Buffer): void;
  /** The server reported a parameter change (after the chunk that carried it was forwarded). */
  onServerParameter?(name: string, value: string): void;
  /** The server's socket took everything written to it (backpressure released). */
  onServerDrain?(): void;
  /** A chunk carried answers (after it was forwarded): the owner may release the server or go on with held input. */
  onServerAnswered?(ready: boolean): void;
  /** The server confirmed DEALLOCATE ALL or DISCARD ALL: every prepared statement on it is gone. */
  onServerStatementsCleared?(): void;
  /** These Parses of the owner's failed: (its name, the server's name). */
  onServerParsesFailed?(failed: readonly (readonly [string, string])[]): void;
  /** The connection is gone (closed by the server, the network, or us). */
  onServerClosed(err: Error | null): void;
}

/** The server could not be reached at all. */
export class ServerConnectError extends Error {}

/** The server sent what this proxy cannot relay safely; the connection is closed. */
export class ServerProtocolError extends Error {}

/** The client sent messages behind a COPY FROM STDIN before the COPY began (refused: see protocol/outstanding.ts). */
export class PipelinedIntoCopyError extends Error {}

export const enum ServerState {
  Ready,
  Owned,
  Internal,
  Closed,
}

const Z = 0x5a;
const S = 0x53;
const E = 0x45;
const C = 0x43;
const DATA_ROW = 0x44;
const PARSE_COMPLETE = 0x31;
const CLOSE_COMPLETE = 0x33;
/** Server messages assembled whole to be read; all others stream through, whatever their size. */
const READ_WHOLE = new Set([Z, S, C, PARSE_COMPLETE, CLOSE_COMPLETE]);
/** The largest server message assembled (ParameterStatus, CommandComplete, our own query's errors). */
export const SERVER_MAX_ASSEMBLED = 1 << 20;

let nextId = 1;

export class ServerConnection implements FrameSink {
  readonly id = nextId++;
  readonly createdAt = Date.now();
  lastUsedAt = Date.now();
  /** Has been handed to a client and given back at least once. */
  used = false;
  /** When the pool closes it instead of reusing it (server_lifetime, jittered). */
  expiresAt = Infinity;
  /** Parameters as this server currently has them (from ParameterStatus, and as we set unreported ones). */
  readonly params: Map<string, string>;
  /** Parameters as reported at login: the session defaults. */
  readonly initialParams: ReadonlyMap<string, string>;
  readonly processId: number;
  readonly secretKey: number;
  /** The login role is a member of a superuser role (SET ROLE makes it one); null when not asked. */
  readonly superuserMember: boolean | null;
  /** connect_query failed with this message (logged by the pool, otherwise ignored as in PgBouncer). */
  readonly connectQueryError: string | null;
  /** Transaction status from the last ReadyForQuery: I idle, T in transaction, E failed transaction. */
  status = 'I';
  /** What it still owes, message by message. */
  readonly outstanding = new Outstanding();
  /** Its client ran SET or RESET (CommandComplete says so): which settings it changed must be read before it goes back. */
  sessionChanged = false;
  /** Settings other than the tracked parameters that it has now besides its defaults (pg_settings source = 'session'). */
  readonly sessionSettings = new Set<string>();
  /** Left in a state it cannot be brought back from (a setting whose name cannot be reset safely): closed when given back. */
  dirty = false;
  /** CancelRequests sent for this server whose cancel connection has not closed yet (the pool holds it aside meanwhile). */
  cancelsInFlight = 0;
  /** Renamed prepared statements this server holds (transaction pooling). */
  readonly statements: ServerStatements;
  private state = ServerState.Ready;

  private owner: ServerOwner | null = null;
  private readonly framer: Framer;
  private internal: { resolve: () => void; reject: (e: Error) => void; error: Error | null; rows: (string | null)[][] | null } | null = null;
  private paramEvents: [string, string][] = [];
  private readonly batch = new FrameBatch();
  private readonly toOwner = { write: (b: Buffer): void => this.owner?.onServerData(b) };
  private answered = false;
  private sawReady = false;
  private statementsCleared = false;
  /** Inside a streamed frame: its later pieces settle nothing. */
  private midStream = false;

  private constructor(
    readonly address: ServerAddress,
    private readonly socket: net.Socket,
    login: LoginResult,
    leftovers: Buffer,
    maxPrepared: number,
  ) {
    this.statements = new ServerStatements(maxPrepared);
    this.params = login.params;
    this.initialParams = new Map(login.params);
    this.processId = login.processId;
    this.secretKey = login.secretKey;
    this.superuserMember = login.superuserMember;
    this.connectQueryError = login.connectQueryError;
    // After login the server's messages stream through; only what pooling reads is assembled, and that is bounded.
    this.framer = new Framer(SERVER_MAX_ASSEMBLED, (type) => !READ_WHOLE.has(type) && !((type === E || type === DATA_ROW) && this.state === ServerState.Internal), 0x7fffffff);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.owner?.onServerDrain?.()); // one listener for the server's life, whoever owns it
    socket.on('error', () => undefined); // 'close' follows and carries the consequence
    socket.on('close', () => this.onClose());
    if (leftovers.length > 0) this.onData(leftovers);
  }

  /**
   * Opens a connection to the first host that answers (in the order the pool's
   * host list gives), over TLS when server_tls_sslmode asks, and logs in;
   * resolves at the first ReadyForQuery. `address` names the host it reached.
   */
  static async connect(address: ServerAddress, credentials: ServerCredentials, timeoutMs: number, maxPrepared = 0, options: ServerConnectOptions = {}): Promise<ServerConnection> {
    const hosts = options.hosts?.order(address.host) ?? [{ host: address.host, port: address.port }];
    let failure: Error = new ServerConnectError('no host to connect to');
    for (const [offset, target] of hosts.entries()) {
      try {
        const server = await ServerConnection.connectTo({ ...address, host: target.host, port: target.port }, credentials, timeoutMs, maxPrepared, options);
        options.hosts?.connected(offset);
        return server;
      } catch (err) {
        // The server refused the login: another host of the same database would refuse it too.
        if (!(err instanceof ServerConnectError)) throw err;
        failure = err;
      }
    }
    throw failure;
  }

  private static async connectTo(address: ServerAddress, credentials: ServerCredentials, timeoutMs: number, maxPrepared: number, options: ServerConnectOptions): Promise<ServerConnection> {
    const where = `${address.host}:${address.port}`;
    let socket = net.connect({ host: address.host, port: address.port });
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    // One deadline for connect, TLS and login; destroying whichever socket is current ends the step in progress.
    const timer = setTimeout(() => socket.destroy(new ServerConnectError(`timed out after ${timeoutMs} ms connecting to ${where}`)), timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', (err) => reject(err instanceof ServerConnectError ? err : new ServerConnectError(`could not connect to ${where}: ${err.message}`)));
      });
      socket.removeAllListeners('error');
      socket.removeAllListeners('connect');
      let endpointHash: Buffer | null = null;
      if (options.tls && options.tls.sslmode !== 'disable') {
        const negotiated = await negotiateServerTls(socket, address.host, options.tls);
        socket = negotiated.socket;
        endpointHash = negotiated.endpointHash;
      }
      const frames = new FrameQueue(socket, SERVER_MAX_ASSEMBLED);
      const startup = { ...options.startupParameters, user: address.user, database: address.dbname };
      const login = await serverLogin((b) => socket.write(b), frames, startup, credentials, timeoutMs, {
        checkSuperuserMembership: options.checkSuperuserMembership === true,
        endpointHash,
        connectQuery: options.connectQuery ?? null,
      });
      const leftovers = frames.detach();
      socket.removeAllListeners('error');
      socket.removeAllListeners('connect');
      return new ServerConnection(address, socket, login, leftovers, maxPrepared);
    } catch (err) {
      socket.destroy();
      if (err instanceof ServerLoginError || err instanceof ServerConnectError) throw err;
      if (err instanceof ServerTlsError) throw new ServerConnectError(err.message);
      if (err instanceof FrameTimeoutError) throw new ServerConnectError(`timed out after ${timeoutMs} ms logging in to ${where}`);
      throw new ServerConnectError(`lost the connection to ${where} during login: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  get closed(): boolean {
    return this.state === ServerState.Closed;
  }

  /** ReadyForQuery messages still owed (Query, Sync and FunctionCall sent and not yet answered). */
  get pendingReady(): number {
    return this.outstanding.syncPoints;
  }

  /** Sync points written so far: the batch number of the next message (ServerStatements). */
  get sentBatches(): number {
    return this.outstanding.syncSent;
  }

  /**
   * The one answer to "may its client give it back now?": open, nothing of ours
   * running, idle outside a transaction, owing nothing (no answer, no open COPY,
   * no unsynced extended message), and no hidden statement answer due.
   */
  get isClean(): boolean {
    return (this.state === ServerState.Ready || this.state === ServerState.Owned) && this.status === 'I' && this.outstanding.settled && this.statements.idle;
  }

  /**
   * The one answer to "may the pool hand it to another client?": clean, and
   * nothing done to it that cannot be undone (statements replaced by SQL, a
   * setting that cannot be reset). A clean server that is not reusable is given
   * back by its client and closed by the pool.
   */
  get reusable(): boolean {
    return this.isClean && this.statements.trusted && !this.dirty;
  }

  attach(owner: ServerOwner | null): void {
    if (this.state === ServerState.Closed) return;
    this.statements.takeFailedParses(); // a previous owner's: never another client's business
    this.owner = owner;
    this.lastUsedAt = Date.now();
    if (this.state !== ServerState.Internal) this.move(owner ? ServerState.Owned : ServerState.Ready);
  }

  /** Writes client bytes; returns false when the socket buffer is full (backpressure). */
  write(buf: Buffer): boolean {
    return this.socket.write(buf);
  }

  /** Holds writes until uncork(), which sends them with one writev. */
  cork(): void {
    this.socket.cork();
  }

  uncork(): void {
    this.socket.uncork();
  }

  /** Runs a query of our own (reset, SET), swallowing its results (or collecting its rows, as text, into `rows`); rejects with the server's error. */
  runInternal(sql: string, rows: (string | null)[][] | null = null): Promise<void> {
    if (this.state === ServerState.Closed) return Promise.reject(new ServerConnectError('server connection is closed'));
    if (this.state === ServerState.Internal) return Promise.reject(new ServerProtocolError('a query of our own is already running'));
    return new Promise((resolve, reject) => {
      this.internal = { resolve, reject, error: null, rows };
      this.move(ServerState.Internal);
      this.outstanding.sent(0x51);
      this.socket.write(serialize.query(sql));
    });
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** The socket (close events). */
  get stream(): net.Socket {
    return this.socket;
  }

  /** Closes politely (Terminate) and for good. */
  close(): void {
    if (this.state === ServerState.Closed) return;
    this.move(ServerState.Closed);
    if (this.socket.writable) this.socket.end(serialize.end());
    this.socket.destroySoon();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  onFrame(type: number, buf: Buffer, start: number, end: number): void {
    if (!this.settle(type)) return;
    const internal = this.state === ServerState.Internal;
    let answer = Answer.Forward;
    switch (type) {
      case Z:
        if (end - start !== 6) return this.refuse(new ServerProtocolError('malformed ReadyForQuery from the server'));
        this.status = String.fromCharCode(buf[start + 5]!);
        this.statements.onReady(this.outstanding.syncDone);
        if (internal && this.outstanding.syncPoints === 0) this.finishInternal();
        else if (!internal) this.sawReady = true;
        break;
      case S: {
        const nameEnd = buf.indexOf(0, start + 5);
        if (nameEnd < 0 || nameEnd >= end) break;
        const name = buf.toString('utf8', start + 5, nameEnd);
        const value = buf.toString('utf8', nameEnd + 1, Math.max(nameEnd + 1, end - 1));
        this.params.set(name, value);
        if (!internal) this.paramEvents.push([name, value]);
        break;
      }
      case C: {
        const first = buf[start + 5];
        if (first === 0x44 || first === 0x50) this.onStatementTag(buf, start, end); // 'D', 'P': no string per message otherwise
        else if (!internal && isSetOrReset(buf, start, end)) this.sessionChanged = true;
        break;
      }
      case DATA_ROW:
        // Assembled only while our own query runs; only then read.
        if (internal && this.internal!.rows) this.internal!.rows.push(decodeDataRow(buf.subarray(start + 5, end)));
        break;
      case E:
        // Assembled only while our own query runs (see the framer's pass-through rule).
        if (internal && this.internal!.error === null) {
          const fields = decodeErrorFields(buf.subarray(start + 5, end));
          this.internal!.error = new ServerLoginError(fields.get('M') ?? 'query failed', fields);
        }
        break;
      case PARSE_COMPLETE:
        if (!internal) answer = this.statements.onParseComplete();
        break;
      case CLOSE_COMPLETE:
        if (!internal) answer = this.statements.onCloseComplete();
        break;
    }
    if (internal || answer === Answer.Swallow) {
      this.batch.flush(); // our own query's results and hidden answers stop here
      return;
    }
    if (answer === Answer.PatchToParseComplete) buf[start] = PARSE_COMPLETE; // same length: patched in place
    this.forward(buf, start, end);
  }

  onFramePart(type: number, buf: Buffer, start: number, end: number, last: boolean): void {
    // The first piece starts the frame: that is when it settles what it answers.
    const first = !this.midStream;
    this.midStream = !last;
    if (first && !this.settle(type)) return;
    if (this.state !== ServerState.Internal) this.forward(buf, start, end);
  }

  /** Feeds one server message type to the answer model; false when the connection had to be refused. */
  private settle(type: number): boolean {
    if (this.state === ServerState.Closed) return false;
    if (!this.outstanding.received(type)) {
      this.refuse(new PipelinedIntoCopyError('messages were sent behind a COPY FROM STDIN before the server started it'));
      return false;
    }
    this.answered = true;
    return true;
  }

  private forward(buf: Buffer, start: number, end: number): void {
    if (this.owner === null) {
      // Unsolicited bytes on a server nobody owns (a FATAL before shutdown): it cannot be reused.
      if (this.outstanding.length === 0) this.close();
      return;
    }
    this.batch.add(this.toOwner, buf, start, end);
  }

  private onData(chunk: Buffer): void {
    this.batch.begin(chunk);
    this.answered = this.sawReady = this.statementsCleared = false;
    try {
      this.framer.push(chunk, this);
    } catch (err) {
      // A bad length or an oversized message from the server: this connection is unusable.
      this.batch.finish();
      this.refuse(new ServerProtocolError(`server sent an unusable message: ${(err as Error).message}`));
      return;
    }
    this.batch.finish();
    const owner = this.owner;
    if (owner === null) {
      this.paramEvents.length = 0;
      return;
    }
    if (this.paramEvents.length > 0 && owner.onServerParameter) {
      for (const [name, value] of this.paramEvents) owner.onServerParameter(name, value);
    }
    this.paramEvents.length = 0;
    if (this.statementsCleared) owner.onServerStatementsCleared?.();
    if (this.sawReady) {
      const failed = this.statements.takeFailedParses();
      if (failed) owner.onServerParsesFailed?.(failed);
    }
    if (this.answered) owner.onServerAnswered?.(this.sawReady);
  }

  /**
   * DEALLOCATE ALL and DISCARD ALL empty the server's statements. A single
   * PREPARE or DEALLOCATE by SQL may have replaced one of our renamed statements
   * (their names are visible in pg_prepared_statements), so a server where that
   * happened is never handed to another client.
   */
  private onStatementTag(buf: Buffer, start: number, end: number): void {
    if (tagIs(buf, start, end, DEALLOCATE_ALL_TAG) || tagIs(buf, start, end, DISCARD_ALL_TAG)) {
      this.statements.clear();
      this.statementsCleared = true;
      // DISCARD ALL also resets every setting: what the client keeps must be read again.
      if (buf[start + 6] === 0x49 && this.state === ServerState.Owned) this.sessionChanged = true; // 'DI': DISCARD
    } else if ((tagIs(buf, start, end, PREPARE_TAG) || tagIs(buf, start, end, DEALLOCATE_TAG)) && this.statements.renaming) {
      this.statements.distrust();
    }
  }

  private finishInternal(): void {
    const { resolve, reject, error } = this.internal!;
    this.internal = null;
    this.move(this.owner ? ServerState.Owned : ServerState.Ready);
    if (error) reject(error);
    else resolve();
  }

  /** Ends the connection because of what was relayed; the owner hears it through onServerClosed. */
  private refuse(err: Error): void {
    if (this.state === ServerState.Closed) return;
    this.fault = err;
    this.move(ServerState.Closed);
    this.socket.destroy();
  }

  private fault: Error | null = null;

  private move(to: ServerState): void {
    this.state = to;
  }

  private onClose(): void {
    const wasClosed = this.state === ServerState.Closed && this.fault === null;
    this.move(ServerState.Closed);
    this.outstanding.clear();
    if (this.internal) {
      const { reject } = this.internal;
      this.internal = null;
      reject(this.fault ?? new ServerConnectError('server closed the connection'));
    }
    const owner = this.owner;
    this.owner = null;
    owner?.onServerClosed(this.fault ?? (wasClosed ? null : new ServerConnectError('server closed the connection unexpectedly')));
  }
}

export interface ServerConnectOptions extends ServerSetup {
  /** Also ask whether the login role can SET ROLE to a superuser (see superuserMember). */
  checkSuperuserMembership?: boolean;
}

/** How a database's servers are reached and started (pool/settings.ts builds it from the configuration). */
export interface ServerSetup {
  /** server_tls_*; plaintext when absent. */
  tls?: ServerTlsSettings;
  /** The pool's place in the database's host list (address.host, comma-separated); address.host and .port alone when absent. */
  hosts?: HostRotation;
  /** Startup parameters besides user and database: the database's client_encoding, datestyle, timezone. */
  startupParameters?: Readonly<Record<string, string>>;
  /** Run once after each login, before the server is first used (connect_query). */
  connectQuery?: string | null;
}

const tag = (text: string): Buffer => Buffer.from(`${text}\0`, 'latin1');
const SET_TAG = tag('SET');
const RESET_TAG = tag('RESET');
const DEALLOCATE_ALL_TAG = tag('DEALLOCATE ALL');
const DISCARD_ALL_TAG = tag('DISCARD ALL');
const PREPARE_TAG = tag('PREPARE');
const DEALLOCATE_TAG = tag('DEALLOCATE');

/** Whether a CommandComplete's tag is `expected`, compared as bytes (length first): no string per message. */
function tagIs(buf: Buffer, start: number, end: number, expected: Buffer): boolean {
  return end - start - 5 === expected.length && buf.compare(expected, 0, expected.length, start + 5, end) === 0;
}

/** CommandComplete of SET or RESET (SET ROLE and RESET ALL report the same tags). */
function isSetOrReset(buf: Buffer, start: number, end: number): boolean {
  return tagIs(buf, start, end, SET_TAG) || tagIs(buf, start, end, RESET_TAG);
}
