// One pool per (database, user): idle servers, servers in use, and clients
// waiting in FIFO order for one. A server is in exactly one place; moves happen
// in acquire/release/discard only.
import type { Logger } from '../log/logger.js';
import { fatal, PgError, SqlState } from '../protocol/pg-error.js';
import type { ServerCredentials } from './server-login.js';
import { ServerConnection, type ServerAddress } from './server.js';

export interface PoolSettings {
  size: number;
  connectTimeoutMs: number;
  waitTimeoutMs: number;
  resetQuery: string;
  /** Cap of renamed prepared statements per server (transaction pooling); 0 when not renaming. */
  maxPrepared: number;
}

interface Waiter {
  resolve: (server: ServerConnection) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | null;
}

export class Pool {
  /** Idle servers, most recently used last (LIFO reuse keeps few servers warm). */
  private readonly idle: ServerConnection[] = [];
  private readonly active = new Set<ServerConnection>();
  private readonly waiters: Waiter[] = [];
  private connecting = 0;
  private credentials: ServerCredentials | null = null;

  constructor(
    readonly name: string,
    readonly address: ServerAddress,
    private readonly settings: PoolSettings,
    private readonly log: Logger,
  ) {}

  get stats(): { idle: number; active: number; waiting: number; connecting: number } {
    return { idle: this.idle.length, active: this.active.size, waiting: this.waiters.length, connecting: this.connecting };
  }

  /** Remembers how to log in as this pool's user (from the latest successful client login). */
  setCredentials(credentials: ServerCredentials): void {
    this.credentials = credentials;
  }

  /** A server for one client: idle first, else a new one if under size, else wait in line. */
  acquire(): Promise<ServerConnection> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, timer: null };
      if (this.settings.waitTimeoutMs > 0) {
        waiter.timer = setTimeout(() => this.expire(waiter), this.settings.waitTimeoutMs);
      }
      this.waiters.push(waiter);
      this.pump();
    });
  }

  /** Gives a server back; a clean one is reset (if asked) and reused, any other is closed. */
  release(server: ServerConnection, reset: boolean): void {
    this.active.delete(server);
    server.attach(null);
    if (!server.isClean) {
      server.close();
      this.pump();
      return;
    }
    if (!reset || this.settings.resetQuery === '') {
      this.makeIdle(server);
      return;
    }
    this.active.add(server); // still busy while the reset runs
    server.runInternal(this.settings.resetQuery).then(
      () => {
        server.statements.clear(); // DISCARD ALL / DEALLOCATE ALL dropped them; re-prepared on demand
        this.active.delete(server);
        this.makeIdle(server);
      },
      (err: Error) => {
        this.log.warn({ server: server.id, err: err.message }, 'server_reset_query failed; closing the server');
        this.active.delete(server);
        server.close();
        this.pump();
      },
    );
  }

  /** Drops a server that must not be reused. */
  discard(server: ServerConnection): void {
    this.active.delete(server);
    server.attach(null);
    server.close();
    this.pump();
  }

  closeAll(): void {
    for (const s of [...this.idle, ...this.active]) s.close();
    this.idle.length = 0;
    this.active.clear();
    for (const w of this.waiters.splice(0)) this.settle(w, new PgError({ severity: 'FATAL', code: SqlState.adminShutdown, message: 'pg-ingress is shutting down' }));
  }

  private makeIdle(server: ServerConnection): void {
    if (server.closed) {
      this.pump();
      return;
    }
    this.idle.push(server);
    this.pump();
  }

  private pump(): void {
    while (this.waiters.length > 0) {
      const server = this.takeIdle();
      if (!server) break;
      const waiter = this.waiters.shift()!;
      this.active.add(server);
      this.settle(waiter, null, server);
    }
    const total = this.idle.length + this.active.size + this.connecting;
    const wanted = this.waiters.length - this.connecting;
    for (let i = 0; i < Math.min(wanted, this.settings.size - total); i++) this.open();
  }

  private takeIdle(): ServerConnection | null {
    for (;;) {
      const server = this.idle.pop();
      if (!server) return null;
      if (!server.closed) return server;
    }
  }

  private open(): void {
    const credentials = this.credentials;
    if (!credentials) return;
    this.connecting++;
    ServerConnection.connect(this.address, credentials, this.settings.connectTimeoutMs, this.settings.maxPrepared).then(
      (server) => {
        this.connecting--;
        server.stream.on('close', () => this.forget(server));
        this.log.debug({ server: server.id, pool: this.name }, 'server connection opened');
        this.makeIdle(server);
      },
      (err: Error) => {
        this.connecting--;
        this.log.warn({ pool: this.name, err: err.message }, 'server connection failed');
        // Nobody else can serve them soon: fail every waiter rather than let them hang.
        const doomed = this.active.size === 0 ? this.waiters.splice(0) : this.waiters.splice(0, 1);
        for (const w of doomed) this.settle(w, err);
      },
    );
  }

  private forget(server: ServerConnection): void {
    const i = this.idle.indexOf(server);
    if (i >= 0) this.idle.splice(i, 1);
    this.active.delete(server);
  }

  private expire(waiter: Waiter): void {
    const i = this.waiters.indexOf(waiter);
    if (i < 0) return;
    this.waiters.splice(i, 1);
    const seconds = this.settings.waitTimeoutMs / 1000;
    this.settle(
      waiter,
      fatal(SqlState.tooManyConnections, `query_wait_timeout: no server connection became free within ${seconds} s`, {
        detail: `pool "${this.name}" has ${this.settings.size} server connections, all in use`,
        hint: 'raise pool_size / default_pool_size, or use transaction pooling',
      }),
    );
  }

  private settle(waiter: Waiter, err: Error | null, server?: ServerConnection): void {
    if (waiter.timer) clearTimeout(waiter.timer);
    if (err) waiter.reject(err);
    else waiter.resolve(server!);
  }
}
