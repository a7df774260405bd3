// A logged-in client relaying to servers from its pool.
//
// States (the `server` field and `waiting`):
//   idle     no server; the next message makes it acquire one (transaction/statement mode)
//   waiting  acquiring a server; the framer holds the client's messages meanwhile
//   active   a server is attached; frames go upstream, answers come back
//   ended    the client left or was thrown out; the server went back to the pool or was closed
// Session mode stays active from login to the end. Transaction mode releases
// the server at ReadyForQuery 'I' with nothing outstanding; statement mode
// releases after every statement and refuses transaction blocks.
//
// Hot path: client chunks are framed only to find boundaries (and the few
// messages pooling rewrites); contiguous frames go upstream in one write.
import type { Duplex } from 'node:stream';
import type { PoolMode } from '../config/index.js';
import type { ConnLogger } from '../log/logger.js';
import type { Framer, FrameSink } from '../protocol/framer.js';
import { fatal, PgError, SqlState } from '../protocol/pg-error.js';
import type { Cancellable } from '../pool/cancel.js';
import type { Pool } from '../pool/pool.js';
import type { ServerConnection, ServerOwner } from '../pool/server.js';
import type { PoolCounters } from '../stats/counters.js';
import { parametersAgree, parameterSync, type ParameterPolicy } from './parameters.js';
import type { PreparedStatements } from './prepared.js';
import { translate } from './login.js';

const TERMINATE = 0x58; // 'X'

/** Client-side timeouts in milliseconds, 0 = off (PgBouncer's names). */
export interface ClientTimeouts {
  queryTimeoutMs: number;
  idleTransactionTimeoutMs: number;
  clientIdleTimeoutMs: number;
}

export interface SessionEnv {
  log: ConnLogger;
  mode: PoolMode;
  timeouts: ClientTimeouts;
  /** Run server_reset_query when a server goes back to the pool (session mode, or server_reset_query_always). */
  resetOnRelease: boolean;
  /** Statement renaming for transaction/statement pooling; null to pass statements through. */
  prepared: PreparedStatements | null;
  parameters: ParameterPolicy;
  /** Connection number (as in the logs) and login time, for SHOW CLIENTS. */
  id: number;
  connectedAt: number;
  onEnd: () => void;
}

export class ClientSession implements FrameSink, ServerOwner, Cancellable {
  private server: ServerConnection | null;
  private waiting = false;
  private chunk: Buffer | null = null;
  /** The server corked while this chunk's rewritten messages are written (see sendRewritten). */
  private corked: ServerConnection | null = null;
  private runStart = 0;
  private runEnd = 0;
  private ended = false;
  /** The client is paused because its server's socket is full. */
  private blockedByServer = false;
  // For the janitor: when the client last did anything, since when a query has run, since when it idles in a transaction.
  private lastActivity = Date.now();
  private busySince = 0;
  private idleInTransactionSince = 0;
  // SHOW STATS: this pool's counters, and performance.now() at the current query, transaction and wait start (0 = none).
  private readonly stats: PoolCounters;
  private queryStart = 0;
  private xactStart = 0;
  private waitStart = 0;
  private readonly onData = (chunk: Buffer): void => this.fromClient(chunk);
  private readonly onClientDrain = (): void => this.server?.resume();

  constructor(
    private readonly socket: Duplex,
    private readonly framer: Framer,
    readonly pool: Pool,
    server: ServerConnection | null,
    /** Tracked parameter values of this client (updated from ParameterStatus). */
    readonly params: Map<string, string>,
    private readonly env: SessionEnv,
  ) {
    this.server = server;
    this.stats = pool.stats;
  }

  /** Starts relaying; `pending` are whole frames the client sent during login. */
  start(pending: Buffer[]): void {
    if (this.server) this.attach(this.server);
    this.socket.on('drain', this.onClientDrain);
    this.socket.on('data', this.onData);
    this.socket.on('end', () => this.end(null));
    this.socket.on('close', () => this.end(null));
    this.socket.on('error', () => this.end(null));
    for (const raw of pending) this.fromClient(raw);
    this.socket.resume();
  }

  currentServer(): ServerConnection | null {
    return this.server;
  }

  /** For SHOW CLIENTS: the client's socket, its state and when it last sent something. */
  get stream(): Duplex {
    return this.socket;
  }

  get isWaiting(): boolean {
    return this.waiting;
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

  // --- client → server

  private fromClient(chunk: Buffer): void {
    if (this.ended) return;
    this.lastActivity = Date.now();
    this.stats.bytesReceived += chunk.length;
    this.chunk = chunk;
    this.runStart = this.runEnd = 0;
    try {
      this.framer.push(chunk, this);
      this.flush();
    } catch (err) {
      this.flush();
      this.fail(err instanceof PgError ? err : fatal(SqlState.protocolViolation, (err as Error).message));
    } finally {
      this.uncorkServer();
    }
    this.chunk = null;
  }

  onFrame(type: number, buf: Buffer, start: number, end: number): boolean {
    if (this.ended) return false;
    if (type === TERMINATE) {
      this.flush();
      this.end(null);
      return false;
    }
    let server = this.server;
    if (!server) {
      server = this.attachIdleServer();
      if (!server) {
        // Hold this frame and the rest until a server is attached.
        this.flush();
        this.acquire();
        return false;
      }
    }
    const rewritten = this.env.prepared !== null && this.env.prepared.rewrite(type, buf, start, end, server, this.sendRewritten);
    const wasBusy = server.pendingReady > 0;
    server.noteClientMessage(type);
    if (!wasBusy && server.pendingReady > 0) {
      this.busySince = this.lastActivity;
      this.idleInTransactionSince = 0;
      this.queryStarted();
    }
    if (rewritten) return true; // sent already, through sendRewritten
    if (buf === this.chunk && start === this.runEnd && this.runEnd > this.runStart) {
      this.runEnd = end; // contiguous with the run: one write later
    } else if (buf === this.chunk) {
      this.flush();
      this.runStart = start;
      this.runEnd = end;
    } else {
      this.flush(); // a frame assembled across chunks: its own buffer
      this.toServer(buf.subarray(start, end));
    }
    return true;
  }

  /**
   * What PreparedStatements sends in place of a frame: after the run before it, in order.
   * The server is corked until the chunk is done, so that a rewritten Bind and the
   * Execute/Sync after it still reach the server in one write (one wakeup of the backend).
   */
  private readonly sendRewritten = (b: Buffer): void => {
    this.flush();
    if (this.corked === null && this.server) {
      this.corked = this.server;
      this.corked.cork();
    }
    this.toServer(b);
  };

  private uncorkServer(): void {
    if (this.corked === null) return;
    const server = this.corked;
    this.corked = null;
    server.uncork();
  }

  private flush(): void {
    if (this.runEnd > this.runStart && this.chunk) {
      const whole = this.runStart === 0 && this.runEnd === this.chunk.length;
      this.toServer(whole ? this.chunk : this.chunk.subarray(this.runStart, this.runEnd));
    }
    this.runStart = this.runEnd = 0;
  }

  private toServer(buf: Buffer): void {
    const server = this.server;
    if (!server || server.closed) return;
    if (!server.write(buf)) {
      this.blockedByServer = true;
      this.socket.pause();
    }
  }

  /** The fast path: an idle server whose parameters already agree, attached at once. */
  private attachIdleServer(): ServerConnection | null {
    const server = this.pool.takeIdleNow();
    if (!server) return null;
    if (!parametersAgree(this.env.parameters, this.params, server)) {
      // Its parameters need a round trip first: the slow path, with this server.
      this.flush();
      this.waiting = true;
      this.socket.pause();
      void this.onAcquired(server);
      return null;
    }
    this.attach(server);
    return server;
  }

  private acquire(): void {
    if (this.waiting) return;
    this.waiting = true;
    this.waitStart = performance.now();
    this.socket.pause();
    this.pool.acquire().then(
      (server) => this.onAcquired(server),
      (err: unknown) => {
        this.waiting = false;
        this.fail(translate(err) as PgError);
      },
    );
  }

  private async onAcquired(server: ServerConnection): Promise<void> {
    if (this.ended) {
      this.pool.release(server, false);
      return;
    }
    try {
      const sync = parameterSync(this.env.parameters, this.params, server);
      if (sync.sql) await server.runInternal(sync.sql);
      sync.done();
    } catch (err) {
      this.waiting = false;
      this.pool.discard(server);
      this.fail(translate(err) as PgError);
      return;
    }
    this.waiting = false;
    if (this.waitStart > 0) {
      this.stats.waitTimeMs += performance.now() - this.waitStart;
      this.waitStart = 0;
    }
    if (this.ended) {
      this.pool.release(server, false);
      return;
    }
    this.attach(server);
    try {
      this.framer.resume(this);
      this.flush();
    } finally {
      this.uncorkServer();
    }
    this.chunk = null;
    if (!this.ended) this.socket.resume();
  }

  private attach(server: ServerConnection): void {
    this.stats.serverAssignmentCount++;
    this.server = server;
    server.attach(this);
  }

  private detach(): ServerConnection | null {
    const server = this.server;
    this.server = null;
    server?.resume();
    // Its drain would now go to another owner: do not stay paused waiting for it.
    if (this.blockedByServer) this.onServerDrain();
    return server;
  }

  // --- server → client

  onServerData(chunk: Buffer): void {
    if (this.ended) return;
    this.stats.bytesSent += chunk.length;
    if (!this.socket.write(chunk)) this.server?.pause();
  }

  /** The server took all we wrote: read from the client again. */
  onServerDrain(): void {
    if (!this.blockedByServer) return;
    this.blockedByServer = false;
    if (!this.ended && !this.waiting) this.socket.resume();
  }

  onServerParameter(name: string, value: string): void {
    // A tracked parameter the client changed itself (SET): keep it for this client's next server.
    if (this.env.parameters.canonical(name) === name) this.params.set(name, value);
  }

  onServerReady(): void {
    const server = this.server;
    if (!server || this.ended) return;
    if (server.pendingReady === 0) {
      this.busySince = 0;
      this.lastActivity = Date.now();
      this.idleInTransactionSince = server.status === 'I' ? 0 : this.lastActivity;
      this.queryEnded(server.status);
    }
    if (this.env.mode === 'session') return;
    if (this.env.mode === 'statement' && server.status !== 'I') {
      this.fail(fatal(SqlState.featureNotSupported, 'transaction blocks not allowed in statement pooling mode', { hint: 'use pool_mode transaction or session for this database or user' }));
      return;
    }
    if (!server.isClean) return;
    this.detach();
    this.pool.release(server, this.env.resetOnRelease);
  }

  onServerClosed(err: Error | null): void {
    this.server = null;
    if (this.ended) return;
    // The server's own FATAL, if it sent one, has been relayed already.
    this.fail(err ? fatal(SqlState.connectionFailure, 'server closed the connection unexpectedly') : null);
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

  tick(now: number): void {
    if (this.ended || this.waiting) return;
    const t = this.env.timeouts;
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
    if (this.ended) return;
    if (err && this.socket.writable) this.socket.write(err.toBuffer());
    this.end(err);
  }

  private end(err: Error | null): void {
    if (this.ended) return;
    this.ended = true;
    this.socket.off('data', this.onData);
    this.socket.off('drain', this.onClientDrain);
    const server = this.detach();
    if (server) {
      server.attach(null);
      // A server left mid-transaction or mid-query is closed by release(), never pooled dirty.
      this.pool.release(server, this.env.resetOnRelease);
    }
    if (err) this.env.log.debug({ err: err.message }, 'client session ended with an error');
    this.socket.end();
    this.env.onEnd();
  }
}
