// A logged-in client relaying to servers from its pool.
//
// States (one field, changed only by move(), which also pauses or resumes the socket):
//   idle       no server (transaction/statement pooling): the next message takes or waits for one
//   waiting    waiting for a server, or for its parameters to be set; input held
//   active     a server is attached; frames go upstream, answers come back
//   held       attached, input held until the server answers more (a COPY not yet
//              confirmed, or too much outstanding): see protocol/outstanding.ts
//   throttled  attached, input paused until the server's socket drains
//   capturing  its transaction ended after a SET or RESET: reading which settings it now
//              has before the server goes back; input held
//   ended      left or thrown out; its server went back to the pool or was closed
// Session mode stays attached from login to the end. Transaction mode releases
// the server when it owes nothing and is idle (releaseIfDone, the one place
// that decides); statement mode also refuses transaction blocks.
//
// Every byte from the client, first delivery or replay of held frames, passes
// through deliver(): whatever goes wrong there ends this client with an
// ErrorResponse and leaves every other client alone.
//
// Hot path: client chunks are framed only to find boundaries (and the few
// messages pooling rewrites); contiguous frames go upstream in one write.
import type { Duplex } from 'node:stream';
import type { Config, PoolMode } from '../config/index.js';
import type { ConnLogger } from '../log/logger.js';
import { FrameBatch } from '../protocol/frame-batch.js';
import { Framer, FrameLengthError, FrameTooLargeError, type FrameSink } from '../protocol/framer.js';
import { MalformedMessageError } from '../protocol/frontend.js';
import { Admit } from '../protocol/outstanding.js';
import { fatal, PgError, SqlState } from '../protocol/pg-error.js';
import type { Cancellable } from '../pool/cancel.js';
import type { Pool } from '../pool/pool.js';
import { PipelinedIntoCopyError, ServerProtocolError, type ServerConnection, type ServerOwner } from '../pool/server.js';
import type { PoolCounters } from '../stats/counters.js';
import { adoptSessionSettings, parametersAgree, parameterSync, SESSION_SETTINGS, type ParameterPolicy } from './parameters.js';
import type { PreparedStatements } from './prepared.js';
import { translate } from './login-errors.js';

const TERMINATE = 0x58; // 'X'
const FLUSH = Buffer.from([0x48, 0, 0, 0, 4]); // 'H', no body
/** Parse, Bind, Describe, Close: what PreparedStatements may rewrite, so read whole. */
const REWRITTEN = new Set([0x50, 0x42, 0x44, 0x43]);
/** admitFrame's "not now": the frame and what follows are held and replayed later. */
const HOLD = -1;

export const enum ClientState {
  Idle,
  Waiting,
  Active,
  Held,
  Throttled,
  Capturing,
  Ended,
}

/** Client-side timeouts in milliseconds, 0 = off (PgBouncer's names). */
export interface ClientTimeouts {
  queryTimeoutMs: number;
  idleTransactionTimeoutMs: number;
  clientIdleTimeoutMs: number;
}

/** The configuration's client timeouts; the janitor reads them each round, so a reload applies them at once. */
export function clientTimeouts(config: Pick<Config, 'query_timeout' | 'idle_transaction_timeout' | 'client_idle_timeout'>): ClientTimeouts {
  return { queryTimeoutMs: config.query_timeout * 1000, idleTransactionTimeoutMs: config.idle_transaction_timeout * 1000, clientIdleTimeoutMs: config.client_idle_timeout * 1000 };
}

export interface SessionEnv {
  log: ConnLogger;
  mode: PoolMode;
  /** Run server_reset_query when a server goes back to the pool (session mode, or server_reset_query_always). */
  resetOnRelease: boolean;
  /** Statement renaming for transaction/statement pooling; null to pass statements through. */
  prepared: PreparedStatements | null;
  parameters: ParameterPolicy;
  /** The largest client message assembled (max_packet_size): only the Parse, Bind, Describe and Close that statement renaming reads; everything else streams through. */
  maxMessage: number;
  /** Connection number (as in the logs) and login time, for SHOW CLIENTS. */
  id: number;
  connectedAt: number;
  /** @param reason why it ended, in PgBouncer's words (log_disconnections) @param told the error pg-ingress sent it, if any (log_pooler_errors) */
  onEnd: (reason: string, told: PgError | null) => void;
}

export class ClientSession implements FrameSink, ServerOwner, Cancellable {
  private state: ClientState;
  private server: ServerConnection | null;
  private readonly framer: Framer;
  private readonly batch = new FrameBatch();
  /** Inside a streamed frame: its server cannot change until the frame is through. */
  private midStream = false;
  // For the janitor: when the client last did anything, since when a query has run, since when it idles in a transaction.
  private lastActivity = Date.now();
  private busySince = 0;
  private idleInTransactionSince = 0;
  // SHOW STATS: this pool's counters, and performance.now() at the current query, transaction and wait start (0 = none).
  private readonly stats: PoolCounters;
  private queryStart = 0;
  private xactStart = 0;
  private waitStart = 0;
  private readonly onData = (chunk: Buffer): void => this.deliver(chunk);
  private readonly onClientDrain = (): void => this.server?.resume();
  private readonly onGone = (): void => this.end(null, 'client unexpected eof');

  constructor(
    private readonly socket: Duplex,
    readonly pool: Pool,
    server: ServerConnection | null,
    /** Tracked parameter values of this client (updated from ParameterStatus). */
    readonly params: Map<string, string>,
    private readonly env: SessionEnv,
  ) {
    this.server = server;
    this.state = server ? ClientState.Active : ClientState.Idle;
    this.stats = pool.stats;
    // Everything streams through unassembled but the messages statement renaming rewrites (read whole, up to max_packet_size).
    this.framer = new Framer(env.maxMessage, env.prepared ? (type) => !REWRITTEN.has(type) : () => true);
  }

  /** Starts relaying; `pending` is what the client sent during login, in order. */
  start(pending: Buffer): void {
    if (this.server) this.server.attach(this);
    this.socket.on('drain', this.onClientDrain);
    this.socket.on('data', this.onData);
    this.socket.on('end', this.onGone);
    this.socket.on('close', this.onGone);
    this.socket.on('error', this.onGone);
    if (pending.length > 0) this.deliver(pending);
    if (this.state !== ClientState.Ended) this.socket.resume();
  }

  currentServer(): ServerConnection | null {
    return this.server;
  }

  /** For SHOW CLIENTS: the client's socket, its state and when it last sent something. */
  get stream(): Duplex {
    return this.socket;
  }

  get isWaiting(): boolean {
    return this.state === ClientState.Waiting;
  }

  /** SHOW CLIENTS' prepared_statements: named statements this client keeps (statement renaming). */
  get preparedStatements(): number {
    return this.env.prepared?.size ?? 0;
  }

  /** SHOW CLIENTS' wait: how long this client has waited for a server so far. */
  get waitingForMs(): number {
    return this.state === ClientState.Waiting && this.waitStart > 0 ? performance.now() - this.waitStart : 0;
  }

  /** The proxy is shutting down: a pooled client is told to go at its next idle point (now, if idle); a session client keeps its session. */
  drain(): void {
    this.draining = true;
    if (this.state === ClientState.Idle && this.env.mode !== 'session') this.fail(goingAway());
  }
  private draining = false;

  /** KILL on the admin console: told why, then closed; a server it held is closed unless clean. */
  kill(err: PgError): void {
    this.fail(err);
  }

  get lastRequestAt(): number {
    return this.lastActivity;
  }

  get id(): number {
    return this.env.id;
  }

  get connectedAt(): number {
    return this.env.connectedAt;
  }

  // --- the one place a state changes

  private move(to: ClientState): void {
    const from = this.state;
    if (from === ClientState.Ended) return;
    this.state = to;
    const paused = to === ClientState.Waiting || to === ClientState.Held || to === ClientState.Throttled || to === ClientState.Capturing || to === ClientState.Ended;
    const wasPaused = from === ClientState.Waiting || from === ClientState.Held || from === ClientState.Throttled || from === ClientState.Capturing;
    if (paused && !wasPaused) this.socket.pause();
    else if (!paused && wasPaused) this.socket.resume();
  }

  // --- client → server

  /**
   * The guarded entry point for client bytes: a chunk just received, or (null)
   * the frames held back until now. Nothing thrown here leaves this client.
   */
  private deliver(chunk: Buffer | null): void {
    if (this.state === ClientState.Ended) return;
    try {
      const bytes = chunk ?? this.framer.takeHeld();
      if (bytes === null) return;
      if (chunk) {
        this.lastActivity = Date.now();
        this.stats.bytesReceived += chunk.length;
      }
      this.batch.begin(bytes);
      this.framer.push(bytes, this);
      this.batch.finish();
      this.afterInput();
    } catch (err) {
      this.abandonBatch();
      this.fail(clientError(err, this.env.log));
    }
  }

  onFrame(type: number, buf: Buffer, start: number, end: number): boolean {
    const admit = this.admitFrame(type, end - start);
    if (admit === HOLD) return false;
    const server = this.server!;
    const out = server.outstanding;
    const wasBusy = out.syncPoints > 0;
    const rewritten = admit === Admit.Forward && this.env.prepared !== null && this.env.prepared.rewrite(type, buf, start, end, server, this.sendRewritten);
    if (!rewritten) {
      if (admit === Admit.Forward) out.sent(type);
      this.batch.add(server, buf, start, end);
    }
    if (!wasBusy && out.syncPoints > 0) this.busyFrom();
    return true;
  }

  /** A large frame that streams through unassembled (any type pooling does not rewrite) is about to begin. */
  onFrameStart(type: number, length: number): boolean {
    const admit = this.admitFrame(type, length);
    if (admit === HOLD) return false;
    if (admit === Admit.Forward) {
      const out = this.server!.outstanding;
      const wasBusy = out.syncPoints > 0;
      out.sent(type);
      if (!wasBusy && out.syncPoints > 0) this.busyFrom();
    }
    return true;
  }

  onFramePart(_type: number, buf: Buffer, start: number, end: number, last: boolean): void {
    this.midStream = !last;
    const server = this.server;
    if (server && this.state !== ClientState.Ended) this.batch.add(server, buf, start, end);
  }

  /**
   * Where one client message goes, decided before any of its bytes are written:
   * it needs a server (taken at once or waited for), the server's answers decide
   * (protocol/outstanding.ts), or it ends the session. HOLD: not now, replayed later.
   */
  private admitFrame(type: number, frameLength: number): Admit | typeof HOLD {
    switch (this.state) {
      case ClientState.Ended:
      case ClientState.Waiting:
      case ClientState.Held:
      case ClientState.Capturing:
        return HOLD; // replayed when the wait is over (an ended session reads no more)
      case ClientState.Idle:
        if (type === TERMINATE) return this.terminate();
        if (!this.attachIdleServer()) {
          this.batch.flush();
          if ((this.state as ClientState) !== ClientState.Waiting) this.acquire(); // attachIdleServer may have started the slow path
          return HOLD; // this frame and the rest wait for a server
        }
        break;
      default:
        if (type === TERMINATE) return this.terminate();
    }
    const server = this.server!;
    const admit = server.outstanding.admit(type, frameLength);
    if (admit === Admit.Hold) {
      // A Flush (answered by nothing, harmless in every state) makes the server send what it owes now.
      this.batch.addOwn(server, FLUSH);
      this.move(ClientState.Held);
      return HOLD;
    }
    if (admit === Admit.Violation) throw violation(type, server.outstanding.copyIn);
    return admit;
  }

  private busyFrom(): void {
    this.busySince = this.lastActivity;
    this.idleInTransactionSince = 0;
    this.queryStarted();
  }

  /** What PreparedStatements sends in place of a frame: recorded as sent, and written after the run before it. */
  private readonly sendRewritten = (b: Buffer): void => {
    const server = this.server!;
    server.outstanding.sent(b[0]!);
    this.batch.addOwn(server, b);
  };

  /** After a chunk: a server that owes nothing goes back; a full server socket pauses the client. */
  private afterInput(): void {
    if (this.releaseIfDone()) return;
    if (this.state === ClientState.Active && this.server?.stream.writableNeedDrain) this.move(ClientState.Throttled);
  }

  /** After an error mid-chunk: write what was batched (its server is closed if it owes answers). */
  private abandonBatch(): void {
    try {
      this.batch.finish();
    } catch {
      // the server socket is gone: nothing to finish
    }
  }

  private terminate(): typeof HOLD {
    this.batch.flush();
    this.end(null, 'client close request');
    return HOLD;
  }

  /** The fast path: an idle server whose parameters already agree, attached at once. */
  private attachIdleServer(): boolean {
    const server = this.pool.takeIdleNow();
    if (!server) return false;
    if (!parametersAgree(this.env.parameters, this.params, server)) {
      // Its parameters need a round trip first: the slow path, with this server.
      this.move(ClientState.Waiting);
      this.onAcquired(server);
      return false;
    }
    this.attach(server);
    return true;
  }

  private acquire(): void {
    this.move(ClientState.Waiting);
    this.waitStart = performance.now();
    this.pool.acquire().then(
      (server) => this.onAcquired(server),
      (err: unknown) => this.fail(translate(err) as PgError),
    );
  }

  /** A server for the waiting client: set its parameters, attach it, replay the held frames. Never throws. */
  private onAcquired(server: ServerConnection): void {
    if (this.state === ClientState.Ended) {
      this.pool.release(server, false);
      return;
    }
    const sync = parameterSync(this.env.parameters, this.params, server);
    const ready = sync.sql ? server.runInternal(sync.sql) : Promise.resolve();
    ready.then(
      () => {
        sync.done();
        if (this.waitStart > 0) {
          this.stats.waitTimeMs += performance.now() - this.waitStart;
          this.waitStart = 0;
        }
        if (this.state === ClientState.Ended) {
          this.pool.release(server, false);
          return;
        }
        this.attach(server);
        this.deliver(null);
      },
      (err: unknown) => {
        this.pool.discard(server);
        this.fail(translate(err) as PgError);
      },
    );
  }

  private attach(server: ServerConnection): void {
    this.stats.serverAssignmentCount++;
    this.server = server;
    server.attach(this);
    this.move(ClientState.Active);
  }

  /**
   * The one decision to give a server back (transaction and statement pooling):
   * it owes nothing and is idle. Returns true when it was released.
   */
  private releaseIfDone(): boolean {
    const server = this.server;
    if (!server || this.env.mode === 'session' || this.midStream || !server.isClean) return false;
    if (this.state !== ClientState.Active && this.state !== ClientState.Throttled) return false;
    if (server.sessionChanged) {
      this.captureSession(server); // releases it once the settings are known
      return true;
    }
    this.server = null;
    server.resume();
    this.move(ClientState.Idle);
    this.pool.release(server, this.env.resetOnRelease);
    // Shutting down: between transactions is where a driver can reconnect to another replica without losing work.
    if (this.draining) this.fail(goingAway());
    return true;
  }

  /**
   * The client ran SET or RESET: ask the server which settings it now has
   * (pg_settings, source 'session'), keep them as this client's own, to be
   * applied wherever it goes next and reset for anyone else, then release it.
   * Nothing is parsed from the client's SQL; the server says what changed.
   */
  private captureSession(server: ServerConnection): void {
    server.sessionChanged = false;
    this.move(ClientState.Capturing);
    // Paused if this client stopped reading; our own answer is never written to it, so read it now.
    server.resume();
    const rows: (string | null)[][] = [];
    // Any failure (a cancel or a client's statement_timeout hitting our query, a setting we cannot
    // carry): the server's session is unknown, so it is closed, never pooled with the client's SET.
    const failed = (err: unknown): void => {
      if (this.state === ClientState.Ended) return;
      this.server = null;
      this.pool.discard(server);
      this.fail(translate(err) as PgError);
    };
    server.runInternal(SESSION_SETTINGS, rows).then(() => {
      if (this.state === ClientState.Ended) return; // its end() gave the server back (closed: it was busy)
      try {
        adoptSessionSettings(this.env.parameters, rows, this.params, server);
      } catch (err) {
        failed(err);
        return;
      }
      this.move(ClientState.Active);
      this.releaseIfDone();
      this.deliver(null);
    }, failed);
  }

  // --- server → client (each entry guarded: a fault ends this client only)

  onServerData(chunk: Buffer): void {
    if (this.state === ClientState.Ended) return;
    this.stats.bytesSent += chunk.length;
    if (!this.socket.write(chunk)) this.server?.pause();
  }

  /** The server took all we wrote: read from the client again. */
  onServerDrain(): void {
    if (this.state === ClientState.Throttled) this.move(ClientState.Active);
  }

  onServerParameter(name: string, value: string): void {
    // A tracked parameter the client changed itself (SET): keep it for this client's next server.
    if (this.env.parameters.canonical(name) === name) this.params.set(name, value);
  }

  onServerStatementsCleared(): void {
    this.env.prepared?.forgetAll();
  }

  onServerParsesFailed(failed: readonly (readonly [string, string])[]): void {
    for (const [name, serverName] of failed) this.env.prepared?.forgetFailed(name, serverName);
  }

  onServerAnswered(ready: boolean): void {
    const server = this.server;
    if (!server || this.state === ClientState.Ended) return;
    try {
      if (ready && server.pendingReady === 0) {
        this.busySince = 0;
        this.lastActivity = Date.now();
        this.idleInTransactionSince = server.status === 'I' ? 0 : this.lastActivity;
        this.queryEnded(server.status);
        if (this.env.mode === 'statement' && server.status !== 'I') {
          this.fail(fatal(SqlState.featureNotSupported, 'transaction blocks not allowed in statement pooling mode', { hint: 'use pool_mode transaction or session for this database or user' }));
          return;
        }
      }
      if (this.state === ClientState.Held) {
        this.move(ClientState.Active);
        this.deliver(null); // may hold again
        return;
      }
      if (ready) this.releaseIfDone();
    } catch (err) {
      this.fail(clientError(err, this.env.log));
    }
  }

  onServerClosed(err: Error | null): void {
    this.server = null;
    if (this.state === ClientState.Ended) return;
    // The server's own FATAL, if it sent one, has been relayed already.
    if (err instanceof PipelinedIntoCopyError) this.fail(fatal(SqlState.protocolViolation, 'messages were sent behind COPY FROM STDIN before the server asked for the data', { hint: 'wait for CopyInResponse before sending anything else' }));
    else if (err instanceof ServerProtocolError) this.fail(fatal(SqlState.connectionFailure, 'the server sent a message pg-ingress cannot relay; the server connection was closed'));
    else this.fail(err ? fatal(SqlState.connectionFailure, 'server closed the connection unexpectedly') : null);
  }

  // --- SHOW STATS, measured where PgBouncer measures: at the edges of queries and transactions

  private queryStarted(): void {
    const now = performance.now();
    this.stats.queryCount++;
    this.queryStart = now;
    if (this.xactStart === 0) {
      this.stats.xactCount++;
      this.xactStart = now;
    }
  }

  private queryEnded(status: string): void {
    if (this.queryStart === 0) return;
    const now = performance.now();
    this.stats.queryTimeMs += now - this.queryStart;
    this.queryStart = 0;
    if (status === 'I' && this.xactStart > 0) {
      this.stats.xactTimeMs += now - this.xactStart;
      this.xactStart = 0;
    }
  }

  // --- timeouts (called by the janitor)

  tick(now: number, t: ClientTimeouts): void {
    if (this.state === ClientState.Ended || this.state === ClientState.Waiting || this.state === ClientState.Capturing) return;
    if (t.queryTimeoutMs > 0 && this.busySince > 0 && now - this.busySince > t.queryTimeoutMs) {
      this.fail(fatal(SqlState.queryCanceled, 'query_timeout: query ran longer than query_timeout', { hint: 'raise query_timeout, or set a server-side statement_timeout below it' }));
    } else if (t.idleTransactionTimeoutMs > 0 && this.idleInTransactionSince > 0 && now - this.idleInTransactionSince > t.idleTransactionTimeoutMs) {
      this.fail(fatal(SqlState.idleInTransactionTimeout, 'idle_transaction_timeout: client was idle in a transaction too long'));
    } else if (t.clientIdleTimeoutMs > 0 && this.busySince === 0 && this.idleInTransactionSince === 0 && now - this.lastActivity > t.clientIdleTimeoutMs) {
      this.fail(fatal(SqlState.idleSessionTimeout, 'client_idle_timeout: client was idle too long'));
    }
  }

  // --- the end

  private fail(err: PgError | null): void {
    if (this.state === ClientState.Ended) return;
    if (err && this.socket.writable) this.socket.write(err.toBuffer());
    this.end(err, err?.message ?? 'server closed the connection');
  }

  private end(err: PgError | null, reason: string): void {
    if (this.state === ClientState.Ended) return;
    this.move(ClientState.Ended);
    this.socket.off('data', this.onData);
    this.socket.off('drain', this.onClientDrain);
    const server = this.server;
    this.server = null;
    if (server) {
      server.resume();
      server.attach(null);
      // Half a message was written to it: nothing can make it usable again.
      if (this.midStream) this.pool.discard(server);
      // A server left mid-transaction, mid-query or mid-COPY is closed by release(), never pooled dirty.
      else this.pool.release(server, this.env.resetOnRelease);
    }
    if (err) this.env.log.debug({ err: err.message }, 'client session ended with an error');
    this.socket.end();
    this.env.onEnd(reason, err);
  }
}

/** A protocol violation the client committed, named as PostgreSQL names it. */
function violation(type: number, inCopy: boolean): PgError {
  const name = `0x${type.toString(16).padStart(2, '0')}`;
  return inCopy
    ? fatal(SqlState.protocolViolation, `unexpected message type ${name} during COPY from stdin`)
    : fatal(SqlState.protocolViolation, `invalid frontend message type ${name}`);
}

/** What the client is told when handling its bytes failed; a fault of ours is logged as one. */
function clientError(err: unknown, log: ConnLogger): PgError {
  if (err instanceof PgError) return err;
  if (err instanceof FrameLengthError || err instanceof FrameTooLargeError) return fatal(SqlState.protocolViolation, err.message);
  if (err instanceof MalformedMessageError) return fatal(SqlState.protocolViolation, err.message);
  log.error({ err: (err as Error)?.stack ?? String(err) }, 'internal error relaying a client; this client was disconnected');
  return fatal(SqlState.internalError, 'internal error in pg-ingress; the connection was closed');
}

/** What a pooled client is told at its idle point when the proxy shuts down (PgBouncer ≥ 1.23 waits for clients too). */
export function goingAway(): PgError {
  return fatal(SqlState.adminShutdown, 'pg-ingress is shutting down', { hint: 'reconnect: another instance will serve you' });
}
