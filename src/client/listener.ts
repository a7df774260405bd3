// Accepts client connections and walks each through handshake → login →
// session. Every failure ends in a Postgres ErrorResponse or a clean close.
import net from 'node:net';
import { isAdminLogin, serveAdminConsole } from '../admin/console.js';
import { logDisconnection, logLogin, logLoginFailed, logPoolerError, tlsDescription } from '../log/connection-events.js';
import { lazyChild, type ConnLogger } from '../log/logger.js';
import { fatal, PgError, SqlState } from '../protocol/pg-error.js';
import type { ProxyContext } from '../context.js';
import type { Config } from '../config/index.js';
import type { ClientRefusal, ClientTerms } from '../budget/ledger.js';
import { negotiate, SilentClose } from './handshake.js';
import { LoginDeadline } from './login-deadline.js';
import { translate } from './login-errors.js';
import { login, welcome } from './login.js';
import { PreparedStatements, type PreparedLimits } from './prepared.js';
import { ClientSession } from './session.js';

let nextConn = 1;

/** How long a closing proxy lets a client read its last message before the socket is destroyed. */
const SOCKET_CLOSE_GRACE_MS = 500;

/** Accepted connections and where they are: logging in (pre-auth, capped apart) or logged in. */
export class Listener {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  /** Connections not yet logged in (max_pending_logins). */
  private pendingLogins = 0;
  /** Logged-in clients and admin consoles (max_client_conn). */
  private loggedIn = 0;

  constructor(private readonly proxy: ProxyContext) {
    this.server = net.createServer({ noDelay: true, pauseOnConnect: true }, (socket) => this.accept(socket));
  }

  /** @param reusePort listen on the port in this process (SO_REUSEPORT; with `exclusive`, node:cluster does not route through the primary) */
  listen(host: string, port: number, reusePort = false): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(reusePort ? { host, port, reusePort: true, exclusive: true } : { host, port }, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as net.AddressInfo).port);
      });
    });
  }

  get clientCount(): number {
    return this.sockets.size;
  }

  /** The listening socket (SHOW FDS). */
  get netServer(): net.Server {
    return this.server;
  }

  /** Stops accepting; the connections there are stay, and a login still under way is told to go (draining) once in. */
  stopAccepting(): void {
    this.draining = true;
    if (this.server.listening) this.server.close();
  }
  private draining = false;

  /** Closes every connection; what was written to one last (a 57P01, a console's answer) still reaches it, for up to SOCKET_CLOSE_GRACE_MS. */
  async close(): Promise<void> {
    const sockets = [...this.sockets];
    const closed = sockets.map((s) => (s.destroyed ? Promise.resolve() : new Promise<void>((resolve) => s.once('close', () => resolve()))));
    for (const s of sockets) s.end();
    const timer = setTimeout(() => {
      for (const s of sockets) s.destroy();
    }, SOCKET_CLOSE_GRACE_MS);
    const listening = this.server.listening ? new Promise<void>((resolve) => this.server.close(() => resolve())) : Promise.resolve();
    await Promise.all([...closed, listening]);
    clearTimeout(timer);
  }

  private accept(socket: net.Socket): void {
    const conn = nextConn++;
    const connectedAt = Date.now();
    const { config } = this.proxy;
    const log = lazyChild(this.proxy.log, { conn, client_addr: socket.remoteAddress, client_port: socket.remotePort });
    socket.on('error', (err) => log.debug({ err: err.message }, 'client socket error'));
    if (this.loggedIn >= config.max_client_conn) return refuse(socket, 'no more connections allowed (max_client_conn)', log, config);
    // Strangers have their own, smaller budget: slow or half-open logins never take a logged-in client's slot.
    if (this.pendingLogins >= pendingLoginCap(config)) return refuse(socket, 'too many connections are logging in (max_pending_logins)', log, config);
    if (config.tcp_keepalive) socket.setKeepAlive(true, config.tcp_keepidle * 1000);
    this.sockets.add(socket);
    this.pendingLogins++;
    let stage: 'login' | 'in' | 'gone' = 'login';
    /** The budget's client slot this connection holds, once admitted. */
    let admitted: { database: string; user: string } | null = null;
    const leaveLogin = (to: 'in' | 'gone'): void => {
      if (stage === 'login') this.pendingLogins--;
      else if (stage === 'in' && to === 'gone') this.loggedIn--;
      stage = to;
      if (to === 'gone' && admitted) this.proxy.budget.clientLeft(admitted.database, admitted.user);
    };
    socket.once('close', () => {
      this.sockets.delete(socket);
      leaveLogin('gone');
    });
    const deadline = new LoginDeadline(config.client_login_timeout * 1000, () => {
      logPoolerError(this.proxy.config, log, { code: SqlState.protocolViolation, message: 'client_login_timeout: login not completed in time' });
      logDisconnection(this.proxy.config, log, 'client_login_timeout', connectedAt);
    });
    deadline.track(socket);
    deadline.speaks(socket);
    this.serve(socket, log, conn, connectedAt, deadline, async (terms) => {
      // This process alone already has max_client_conn: no need to ask the budget.
      if (this.loggedIn >= config.max_client_conn) return clientRefusal('max_client_conn');
      const refusal = await this.proxy.budget.admitClient(terms);
      if (refusal) return clientRefusal(refusal);
      if (stage === 'gone') {
        this.proxy.budget.clientLeft(terms.database, terms.user); // closed while the budget was asked
        return null;
      }
      admitted = { database: terms.database, user: terms.user };
      leaveLogin('in');
      this.loggedIn++;
      return null;
    })
      .catch((err) => log.error({ err: (err as Error).stack }, 'unexpected error serving a client'))
      .finally(() => deadline.clear());
  }

  /** @param admit takes a logged-in client slot (max_client_conn and the per-database and per-user limits); the refusal to send when none is left */
  private async serve(socket: net.Socket, log: ConnLogger, conn: number, connectedAt: number, deadline: LoginDeadline, admit: Admit): Promise<void> {
    const proxy = this.proxy;
    let stream: import('node:stream').Duplex = socket;
    /** Who is logging in, once the StartupMessage said (log_connections). */
    let who: { db: string; user: string } | null = null;
    try {
      const negotiated = await negotiate(socket, {
        sslmode: proxy.config.client_tls_sslmode,
        tls: () => proxy.tls.tls,
        onSecure: (secure) => {
          deadline.track(secure);
          deadline.speaks(null); // mid-handshake: no message can be read
        },
      });
      if (negotiated.kind === 'cancel') {
        proxy.cancels.forward(negotiated.processId, negotiated.secretKey);
        socket.destroy();
        return;
      }
      stream = negotiated.socket;
      deadline.speaks(stream);
      const user = negotiated.params.get('user') ?? '';
      who = { db: negotiated.params.get('database') || user, user };
      if (isAdminLogin(negotiated)) {
        // Console users are held to max_client_conn only, as in PgBouncer.
        const terms = clientTerms(proxy.config, 'pgbouncer', negotiated.params.get('user') ?? '', true);
        const reason = await serveAdminConsole(proxy, negotiated, log, { onLoggedIn: () => loggedInOrThrow(deadline, admit, terms) });
        logDisconnection(proxy.config, lazyChild(log, who), reason, connectedAt);
        return;
      }
      const session = await login(proxy, negotiated, log);
      const { mode, pool, server } = session;
      const refusal = deadline.expired || stream.destroyed ? null : await admit(clientTerms(proxy.config, pool.database, pool.address.user, false));
      if (deadline.expired || stream.destroyed || refusal) {
        // Too late, or no room: the login's server goes back untouched.
        if (server) pool.release(server, false);
        if (refusal && !deadline.expired && !stream.destroyed) throw refusal;
        return;
      }
      deadline.clear();
      const pooled = mode !== 'session';
      const client = new ClientSession(stream, pool, pooled ? null : server, session.params, {
        log: session.log,
        mode,
        resetOnRelease: !pooled || proxy.config.server_reset_query_always,
        prepared: pooled && proxy.config.max_prepared_statements > 0 ? new PreparedStatements(preparedLimits(proxy.config)) : null,
        parameters: proxy.parameters,
        maxMessage: proxy.config.max_packet_size,
        id: conn,
        connectedAt: Date.now(),
        onEnd: (reason, told) => {
          proxy.cancels.unregister(keys.processId);
          proxy.clients.delete(client);
          pool.clientLeft();
          if (told) logPoolerError(proxy.config, session.log, told);
          logDisconnection(proxy.config, session.log, reason, connectedAt);
        },
      });
      pool.clientJoined();
      proxy.clients.add(client);
      const keys = proxy.cancels.register(client);
      welcome(stream, session.reported, keys);
      // Transaction and statement pooling: the login's server (if it needed one) goes back until the first query.
      if (pooled && server) pool.release(server, proxy.config.server_reset_query_always);
      logLogin(proxy.config, session.log, { db: pool.database, user: pool.address.user, tls: tlsDescription(negotiated.tls) });
      client.start(session.pending);
      if (this.draining) client.drain(); // logged in while the proxy shuts down
    } catch (err) {
      const e = translate(err);
      if (deadline.expired) return; // already told, and closed
      const whoLog = who ? lazyChild(log, who) : log;
      if (e instanceof PgError) {
        if (who) logLoginFailed(proxy.config, whoLog, who);
        logPoolerError(proxy.config, whoLog, e);
        if (stream.writable) stream.end(e.toBuffer());
        setTimeout(() => stream.destroy(), 1000).unref();
      } else {
        if (!(e instanceof SilentClose)) log.warn({ err: e.message }, 'client connection failed');
        stream.destroy();
      }
      logDisconnection(proxy.config, whoLog, e.message, connectedAt);
    }
  }
}

/** Refused before reading anything: a plaintext ErrorResponse, as PgBouncer does for max_client_conn. */
function refuse(socket: net.Socket, message: string, log: ConnLogger, config: Config): void {
  logPoolerError(config, log, { code: SqlState.tooManyConnections, message });
  logDisconnection(config, log, message, Date.now());
  socket.end(fatal(SqlState.tooManyConnections, message).toBuffer());
  socket.resume(); // read to EOF so that the close completes
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** max_pending_logins, or by default half of max_client_conn. */
export function pendingLoginCap(config: Pick<Config, 'max_pending_logins' | 'max_client_conn'>): number {
  return config.max_pending_logins > 0 ? config.max_pending_logins : Math.max(1, Math.ceil(config.max_client_conn / 2));
}

async function loggedInOrThrow(deadline: LoginDeadline, admit: Admit, terms: ClientTerms): Promise<void> {
  if (deadline.expired) throw new SilentClose('login deadline passed');
  const refusal = await admit(terms);
  if (refusal) throw refusal;
  if (deadline.expired) throw new SilentClose('login deadline passed');
  deadline.clear();
}

type Admit = (terms: ClientTerms) => Promise<PgError | null>;

/** The client limits of one login: global, and the database entry's and user's own. */
function clientTerms(config: Config, database: string, user: string, adminConsole: boolean): ClientTerms {
  const entry = config.databases[database] ?? config.databases['*'];
  return {
    database,
    user,
    maxClientConn: config.max_client_conn,
    maxDbClientConnections: adminConsole ? 0 : (entry?.max_db_client_connections ?? config.max_db_client_connections),
    maxUserClientConnections: adminConsole ? 0 : (config.users[user]?.max_user_client_connections ?? config.max_user_client_connections),
  };
}

/** What a client refused by a limit is told (PgBouncer's words). */
function clientRefusal(limit: ClientRefusal): PgError {
  return fatal(SqlState.tooManyConnections, limit === 'max_client_conn' ? 'no more connections allowed (max_client_conn)' : `client connections exceeded (${limit})`);
}

function preparedLimits(config: Config): PreparedLimits {
  return { maxStatements: config.max_client_prepared_statements, maxBytes: config.max_client_prepared_bytes };
}
