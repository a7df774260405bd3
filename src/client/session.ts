// A logged-in client relaying to its server (session pooling): the client keeps
// the server until it leaves, then the server is reset and reused, or closed
// if it was left mid-transaction or mid-query.
//
// Hot path: client chunks are framed only to find message boundaries (and
// Terminate); contiguous frames go upstream in one write per chunk. Server
// chunks are forwarded as received.
import type { Duplex } from 'node:stream';
import type { Logger } from '../log/logger.js';
import type { Framer, FrameSink } from '../protocol/framer.js';
import { fatal, SqlState } from '../protocol/pg-error.js';
import type { Cancellable } from '../pool/cancel.js';
import type { Pool } from '../pool/pool.js';
import type { ServerConnection, ServerOwner } from '../pool/server.js';

const TERMINATE = 0x58; // 'X'

export interface SessionEnv {
  log: Logger;
  onEnd: () => void;
}

export class ClientSession implements FrameSink, ServerOwner, Cancellable {
  private server: ServerConnection | null;
  private chunk: Buffer | null = null;
  private runStart = 0;
  private runEnd = 0;
  private ended = false;
  private readonly onData = (chunk: Buffer): void => this.fromClient(chunk);
  private readonly onClientDrain = (): void => this.server?.resume();
  private readonly onServerDrain = (): void => void this.socket.resume();

  constructor(
    private readonly socket: Duplex,
    private readonly framer: Framer,
    private readonly pool: Pool,
    server: ServerConnection,
    /** Tracked parameter values of this client (updated from ParameterStatus). */
    readonly params: Map<string, string>,
    private readonly env: SessionEnv,
  ) {
    this.server = server;
  }

  /** Starts relaying; `pending` are whole frames the client sent during login. */
  start(pending: Buffer[]): void {
    const server = this.server!;
    server.attach(this);
    server.stream.on('drain', this.onServerDrain);
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

  // --- client → server

  private fromClient(chunk: Buffer): void {
    if (this.ended) return;
    this.chunk = chunk;
    this.runStart = this.runEnd = 0;
    try {
      this.framer.push(chunk, this);
    } catch (err) {
      this.flush();
      this.fail(fatal(SqlState.protocolViolation, (err as Error).message));
      return;
    }
    this.flush();
    this.chunk = null;
  }

  onFrame(type: number, buf: Buffer, start: number, end: number): boolean {
    if (this.ended) return false;
    if (type === TERMINATE) {
      this.flush();
      this.end(null);
      return false;
    }
    this.server!.noteClientMessage(type);
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
    if (!server.write(buf)) this.socket.pause();
  }

  // --- server → client

  onServerData(chunk: Buffer): void {
    if (this.ended) return;
    if (!this.socket.write(chunk)) this.server?.pause();
  }

  onServerParameter(name: string, value: string): void {
    if (this.params.has(name) || name === 'application_name') this.params.set(name, value);
  }

  onServerClosed(err: Error | null): void {
    this.server = null;
    if (this.ended) return;
    // The server's own FATAL, if it sent one, has been relayed already.
    this.fail(err ? fatal(SqlState.connectionFailure, 'server closed the connection unexpectedly') : null);
  }

  // --- the end

  private fail(err: ReturnType<typeof fatal> | null): void {
    if (this.ended) return;
    if (err && this.socket.writable) this.socket.write(err.toBuffer());
    this.end(err);
  }

  private end(err: Error | null): void {
    if (this.ended) return;
    this.ended = true;
    this.socket.off('data', this.onData);
    this.socket.off('drain', this.onClientDrain);
    const server = this.server;
    this.server = null;
    if (server) {
      server.stream.off('drain', this.onServerDrain);
      server.resume();
      this.pool.release(server, true); // closed instead if dirty
    }
    if (err) this.env.log.debug({ err: err.message }, 'client session ended with an error');
    this.socket.end();
    this.env.onEnd();
  }
}
