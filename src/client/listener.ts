// Accepts client connections and walks each through handshake → login →
// session. Every failure ends in a Postgres ErrorResponse or a clean close.
import net from 'node:net';
import { isAdminLogin, serveAdminConsole } from '../admin/console.js';
import { lazyChild, type ConnLogger } from '../log/logger.js';
import { fatal, PgError, SqlState } from '../protocol/pg-error.js';
import type { ProxyContext } from '../proxy.js';
import { negotiate, SilentClose } from './handshake.js';
import { login, translate, welcome } from './login.js';
import { PreparedStatements } from './prepared.js';
import { ClientSession } from './session.js';

let nextConn = 1;

export class Listener {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly proxy: ProxyContext) {
    this.server = net.createServer({ noDelay: true, pauseOnConnect: true }, (socket) => this.accept(socket));
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port }, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  get clientCount(): number {
    return this.sockets.size;
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: net.Socket): void {
    const conn = nextConn++;
    const log = lazyChild(this.proxy.log, { conn, client_addr: socket.remoteAddress });
    socket.on('error', (err) => log.debug({ err: err.message }, 'client socket error'));
    if (this.sockets.size >= this.proxy.config.max_client_conn) {
      // Refused before reading anything: a plaintext ErrorResponse, as PgBouncer does.
      socket.end(fatal(SqlState.tooManyConnections, 'no more connections allowed (max_client_conn)').toBuffer());
      socket.resume(); // read to EOF so that the close completes
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    this.serve(socket, log, conn).catch((err) => log.error({ err: (err as Error).message }, 'unexpected error serving a client'));
  }

  private async serve(socket: net.Socket, log: ConnLogger, conn: number): Promise<void> {
    const proxy = this.proxy;
    let stream: import('node:stream').Duplex = socket;
    try {
      const negotiated = await negotiate(socket, {
        sslmode: proxy.config.client_tls_sslmode,
        tls: () => proxy.tls.tls,
        timeoutMs: proxy.config.client_login_timeout * 1000 || 60_000,
      });
      if (negotiated.kind === 'cancel') {
        proxy.cancels.forward(negotiated.processId, negotiated.secretKey);
        socket.destroy();
        return;
      }
      stream = negotiated.socket;
      if (isAdminLogin(negotiated)) {
        await serveAdminConsole(proxy, negotiated, log);
        return;
      }
      const session = await login(proxy, negotiated, log);
      const { frames, framer } = session.frames.detach();
      framer.setMaxLength(proxy.config.max_packet_size);
      const { mode, pool, server } = session;
      const pooled = mode !== 'session';
      const client = new ClientSession(stream, framer, pool, pooled ? null : server, session.params, {
        log: session.log,
        mode,
        resetOnRelease: !pooled || proxy.config.server_reset_query_always,
        prepared: pooled && proxy.config.max_prepared_statements > 0 ? new PreparedStatements() : null,
        parameters: proxy.parameters,
        id: conn,
        connectedAt: Date.now(),
        timeouts: {
          queryTimeoutMs: proxy.config.query_timeout * 1000,
          idleTransactionTimeoutMs: proxy.config.idle_transaction_timeout * 1000,
          clientIdleTimeoutMs: proxy.config.client_idle_timeout * 1000,
        },
        onEnd: () => {
          proxy.cancels.unregister(keys.processId);
          proxy.clients.delete(client);
        },
      });
      proxy.clients.add(client);
      const keys = proxy.cancels.register(client);
      welcome(stream, server, keys);
      // Transaction and statement pooling: the login's server goes back until the first query.
      if (pooled) pool.release(server, proxy.config.server_reset_query_always);
      session.log.debug({ tls: negotiated.tls !== null }, 'client logged in');
      client.start(frames);
    } catch (err) {
      const e = translate(err);
      if (e instanceof PgError) {
        log.info({ code: e.code, err: e.message }, 'client login refused');
        if (stream.writable) stream.end(e.toBuffer());
        setTimeout(() => stream.destroy(), 1000).unref();
      } else {
        if (!(e instanceof SilentClose)) log.warn({ err: e.message }, 'client connection failed');
        stream.destroy();
      }
    }
  }
}
