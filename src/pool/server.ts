// One upstream connection to PostgreSQL ("server", as in PgBouncer): connects,
// logs in, then relays raw chunks to whichever client owns it while watching
// only what pooling needs: ReadyForQuery status, ParameterStatus, and whether a
// request is still outstanding.
import net from 'node:net';
import { serialize } from 'pg-protocol';
import { Framer, type FrameSink } from '../protocol/framer.js';
import { FrameQueue, FrameTimeoutError } from '../protocol/frame-queue.js';
import { decodeErrorFields, serverLogin, ServerLoginError, type ServerCredentials } from './server-login.js';
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
  /** A chunk carried ReadyForQuery (after it was forwarded): the owner may release the server. */
  onServerReady?(): void;
  /** The connection is gone (closed by the server, the network, or us). */
  onServerClosed(err: Error | null): void;
}

/** The server could not be reached at all. */
export class ServerConnectError extends Error {}

const Z = 0x5a;
const S = 0x53;
const E = 0x45;
const PARSE_COMPLETE = 0x31;
const CLOSE_COMPLETE = 0x33;
/** The server messages pooling opens; all others pass through, streamed when large. */
const INSPECTED = new Set([Z, S, E, PARSE_COMPLETE, CLOSE_COMPLETE]);
/** The server is trusted; streamed messages cost no memory whatever their size. */
const SERVER_MAX_MESSAGE = 0x7fffffff;

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
  /** Transaction status from the last ReadyForQuery: I idle, T in transaction, E failed transaction. */
  status = 'I';
  /** ReadyForQuery messages still expected (one per Query, Sync or FunctionCall sent). */
  pendingReady = 0;
  /** Extended-protocol messages sent since the last Sync. */
  unsynced = false;
  /** Sync points (Query, Sync, FunctionCall) sent, and ReadyForQuery received: batch numbers. */
  sentBatches = 0;
  doneBatches = 0;
  closed = false;
  /** CancelRequests sent for this server whose cancel connection has not closed yet (the pool holds it aside meanwhile). */
  cancelsInFlight = 0;
  /** Renamed prepared statements this server holds (transaction pooling). */
  readonly statements: ServerStatements;

  private owner: ServerOwner | null = null;
  private readonly framer: Framer;
  private internal: { resolve: () => void; reject: (e: Error) => void; error: Error | null } | null = null;
  private paramEvents: [string, string][] = [];
  // The chunk being relayed and the run of its frames not yet handed to the owner.
  private chunk: Buffer | null = null;
  private runStart = 0;
  private runEnd = 0;
  private sawReady = false;

  private constructor(
    readonly address: ServerAddress,
    private readonly socket: net.Socket,
    login: { params: Map<string, string>; processId: number; secretKey: number },
    framer: Framer,
    leftovers: Buffer[],
    maxPrepared: number,
  ) {
    this.statements = new ServerStatements(maxPrepared);
    this.params = login.params;
    this.initialParams = new Map(login.params);
    this.processId = login.processId;
    this.secretKey = login.secretKey;
    // After login the server's messages stream through; only what pooling reads is ever assembled.
    this.framer = framer.buffered === 0 ? new Framer(SERVER_MAX_MESSAGE, (type) => !INSPECTED.has(type)) : framer;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.owner?.onServerDrain?.()); // one listener for the server's life, whoever owns it
    socket.on('error', () => undefined); // 'close' follows and carries the consequence
    socket.on('close', () => this.onClose());
    for (const raw of leftovers) this.onData(raw);
  }

  /** Opens a TCP connection and logs in; resolves at the first ReadyForQuery. */
  static async connect(address: ServerAddress, credentials: ServerCredentials, timeoutMs: number, maxPrepared = 0): Promise<ServerConnection> {
    const socket = net.connect({ host: address.host, port: address.port });
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    const timer = setTimeout(() => socket.destroy(new ServerConnectError(`timed out after ${timeoutMs} ms connecting to ${address.host}:${address.port}`)), timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', (err) => reject(err instanceof ServerConnectError ? err : new ServerConnectError(`could not connect to ${address.host}:${address.port}: ${err.message}`)));
      });
      const frames = new FrameQueue(socket, 1 << 20);
      const startup = { user: address.user, database: address.dbname };
      const login = await serverLogin((b) => socket.write(b), frames, startup, credentials, timeoutMs);
      const { frames: leftovers, framer } = frames.detach();
      socket.removeAllListeners('error');
      socket.removeAllListeners('connect');
      return new ServerConnection(address, socket, login, framer, leftovers, maxPrepared);
    } catch (err) {
      socket.destroy();
      if (err instanceof ServerLoginError || err instanceof ServerConnectError) throw err;
      if (err instanceof FrameTimeoutError) throw new ServerConnectError(`timed out after ${timeoutMs} ms logging in to ${address.host}:${address.port}`);
      throw new ServerConnectError(`lost the connection to ${address.host}:${address.port} during login: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** True when the server can be handed to another client as is. */
  get isClean(): boolean {
    return !this.closed && this.status === 'I' && this.pendingReady === 0 && !this.unsynced && this.internal === null && this.statements.idle;
  }

  attach(owner: ServerOwner | null): void {
    this.owner = owner;
    this.lastUsedAt = Date.now();
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

  /** Records what the client sent so that cleanliness can be judged. */
  noteClientMessage(type: number): void {
    switch (type) {
      case 0x51: // Q Query
      case 0x46: // F FunctionCall
        this.pendingReady++;
        this.sentBatches++;
        break;
      case 0x53: // S Sync
        this.pendingReady++;
        this.sentBatches++;
        this.unsynced = false;
        break;
      case 0x50: // P Parse
      case 0x42: // B Bind
      case 0x45: // E Execute
      case 0x44: // D Describe
      case 0x43: // C Close
        this.unsynced = true;
        break;
    }
  }

  /** Runs a query of our own (reset, SET), swallowing its results; rejects with the server's error. */
  runInternal(sql: string): Promise<void> {
    if (this.closed) return Promise.reject(new ServerConnectError('server connection is closed'));
    return new Promise((resolve, reject) => {
      this.internal = { resolve, reject, error: null };
      this.pendingReady++;
      this.sentBatches++;
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
    if (this.closed) return;
    this.closed = true;
    if (this.socket.writable) this.socket.end(serialize.end());
    this.socket.destroySoon();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  onFrame(type: number, buf: Buffer, start: number, end: number): void {
    const internal = this.internal !== null;
    let answer = Answer.Forward;
    switch (type) {
      case Z:
        this.status = String.fromCharCode(buf[start + 5]!);
        if (this.pendingReady > 0) this.pendingReady--;
        this.doneBatches++;
        this.statements.onReady(this.doneBatches);
        if (internal && this.pendingReady === 0) {
          const { resolve, reject, error } = this.internal!;
          this.internal = null;
          if (error) reject(error);
          else resolve();
        } else if (!internal) this.sawReady = true;
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
      case E:
        if (internal) {
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
      this.flushRun(); // our own query's results and hidden answers stop here
      return;
    }
    if (answer === Answer.PatchToParseComplete) buf[start] = PARSE_COMPLETE; // same length: patched in place
    this.forward(buf, start, end);
  }

  onFramePart(_type: number, buf: Buffer, start: number, end: number): void {
    if (this.internal === null) this.forward(buf, start, end);
  }

  /** Adds bytes to the run handed to the owner in one piece; bytes not in the chunk go at once. */
  private forward(buf: Buffer, start: number, end: number): void {
    if (buf === this.chunk && start === this.runEnd && this.runEnd > this.runStart) {
      this.runEnd = end;
    } else {
      this.flushRun();
      if (buf === this.chunk) {
        this.runStart = start;
        this.runEnd = end;
      } else {
        this.owner?.onServerData(buf.subarray(start, end)); // assembled, or the copied header of a streamed frame
      }
    }
  }

  private flushRun(): void {
    const chunk = this.chunk;
    if (chunk && this.runEnd > this.runStart) {
      const whole = this.runStart === 0 && this.runEnd === chunk.length;
      const owner = this.owner;
      if (owner) owner.onServerData(whole ? chunk : chunk.subarray(this.runStart, this.runEnd));
      else if (this.pendingReady === 0) this.close(); // unsolicited bytes on an idle server (e.g. a FATAL before shutdown)
    }
    this.runStart = this.runEnd = 0;
  }

  private onData(chunk: Buffer): void {
    this.chunk = chunk;
    this.runStart = this.runEnd = 0;
    this.sawReady = false;
    try {
      this.framer.push(chunk, this);
    } catch (err) {
      this.socket.destroy(err as Error);
      return;
    }
    this.flushRun();
    this.chunk = null;
    const owner = this.owner;
    if (owner && this.paramEvents.length > 0 && owner.onServerParameter) {
      for (const [name, value] of this.paramEvents) owner.onServerParameter(name, value);
    }
    this.paramEvents.length = 0;
    if (this.sawReady) owner?.onServerReady?.();
  }

  private onClose(): void {
    const wasClosed = this.closed;
    this.closed = true;
    if (this.internal) {
      const { reject } = this.internal;
      this.internal = null;
      reject(new ServerConnectError('server closed the connection'));
    }
    const owner = this.owner;
    this.owner = null;
    owner?.onServerClosed(wasClosed ? null : new ServerConnectError('server closed the connection unexpectedly'));
  }
}
