// One worker's statistics at one moment: its pools, clients, servers and
// counters, as plain JSON-safe rows (they cross the IPC channel to the primary).
// The column names are PgBouncer's (SHOW POOLS, SHOW CLIENTS, …).
import type net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { route, type Route } from '../client/router.js';
import type { Config, PoolMode } from '../config/index.js';
import type { Pool } from '../pool/pool.js';
import type { CounterValues } from './counters.js';
import { memoryRows, type MemoryRow } from './memory.js';
import { processCounterValues, type ProcessCounterValues } from './process-counters.js';

export interface PoolRow {
  database: string;
  user: string;
  pool_mode: PoolMode;
  pool_size: number;
  cl_active: number;
  cl_waiting: number;
  /** Cancels sent for this pool's servers, their connection not closed yet. */
  cl_active_cancel_req: number;
  /** Cancels whose connection to the server is still being opened. */
  cl_waiting_cancel_req: number;
  sv_active: number;
  /** Connections open to the server to carry a cancel (one per cl_active_cancel_req). */
  sv_active_cancel: number;
  /** Servers given back while a cancel for them is in flight: no client gets them until it ends. */
  sv_being_canceled: number;
  sv_idle: number;
  sv_used: number;
  sv_tested: number;
  sv_login: number;
  /** How long the oldest waiting client has waited, in microseconds. */
  maxwait_us: number;
  /** The database's load_balance_hosts, shown only when its host is a list (as PgBouncer does); takeSnapshot always sets it. */
  load_balance_hosts?: string | null;
  totals: CounterValues;
  /** What the last whole stats period added: the avg_ columns derive from it. */
  last_period: CounterValues;
}

/** One client or server connection (SHOW CLIENTS / SHOW SERVERS). Times are epoch milliseconds. */
export interface ConnectionRow {
  type: 'C' | 'S';
  worker: number;
  id: number;
  user: string;
  database: string;
  state: string;
  addr: string;
  port: number;
  local_addr: string;
  local_port: number;
  connect_time: number;
  request_time: number;
  wait_us: number;
  /** 1 once the server is to be closed when next released (a reload changed its database, or RECONNECT). */
  close_needed: number;
  /** The id of the paired connection (server for a client, client for a server). */
  link: number | null;
  remote_pid: number;
  tls: string;
  application_name: string;
  prepared_statements: number;
  /** The socket's file descriptor in its worker process (SHOW FDS); null where Node does not expose it. */
  fd: number | null;
  /** Bytes read from the socket and not consumed yet, and bytes queued to write (SHOW SOCKETS' pkt_avail and send_avail). */
  recv_pending: number;
  send_pending: number;
  /** Session parameters as tracked (SHOW FDS). */
  client_encoding: string | null;
  std_strings: string | null;
  datestyle: string | null;
  timezone: string | null;
}

/** A user (SHOW USERS): configured in `users:`, or with a pool or a client here. */
export interface UserRow {
  name: string;
  /** The user's own overrides, null where the global setting applies. */
  pool_size: number | null;
  reserve_pool_size: number | null;
  pool_mode: PoolMode | null;
  max_user_connections: number;
  /** Server connections of this user, open or logging in. */
  current_connections: number;
  max_user_client_connections: number;
  current_client_connections: number;
}

/** A listening socket (SHOW FDS' `pooler` rows). */
export interface ListenerRow {
  worker: number;
  fd: number | null;
  addr: string;
  port: number;
}

/** A database entry (SHOW DATABASES): configured ones and those a `*` entry made. */
export interface DatabaseRow {
  name: string;
  host: string;
  port: number;
  database: string;
  force_user: string | null;
  pool_size: number;
  min_pool_size: number;
  /** SHOW DATABASES' reserve_pool_size (named reserve_pool in pgbouncer_exporter's metric). */
  reserve_pool: number;
  pool_mode: PoolMode | null;
  max_connections: number;
  current_connections: number;
  // Added with SHOW DATABASES' PgBouncer 1.25 columns; takeSnapshot always sets them.
  /** Seconds. */
  server_lifetime?: number;
  load_balance_hosts?: string | null;
  max_client_connections?: number;
  current_client_connections?: number;
  /** PAUSE or KILL of this database (or of all) holds its transactions: 1. */
  paused?: number;
  /** DISABLE: new clients are refused: 1. */
  disabled?: number;
}

export interface WorkerSnapshot {
  worker: number;
  pid: number;
  pools: PoolRow[];
  databases: DatabaseRow[];
  clients: ConnectionRow[];
  servers: ConnectionRow[];
  // takeSnapshot always sets these three.
  users?: UserRow[];
  listeners?: ListenerRow[];
  /** SHOW MEM: this process's object counts and memory (src/stats/memory.ts). */
  memory?: MemoryRow[];
  /** Accepted connections, logged in or not (PgBouncer's used_clients). */
  connections: number;
  /** Limits each worker enforces on its own. */
  limits: { max_client_conn: number; max_user_connections: number };
  /** This process's counters that belong to no pool (src/stats/process-counters.ts); takeSnapshot always sets them. */
  process?: ProcessCounterValues;
  /** PAUSE without a database is in effect (SHOW STATE). */
  paused?: boolean;
}

export interface SnapshotSource {
  worker: number;
  config: Config;
  pools: Iterable<Pool>;
  clients: Iterable<ClientView>;
  /** Client connections the listener holds, including those still logging in. */
  connections: number;
  /** The listening sockets, for SHOW FDS; none if not given. */
  listeners?: Iterable<net.Server>;
  /** PAUSE and DISABLE as the console set them (pool/manager.ts's PoolManager); none if not given. */
  states?: DatabaseStates;
}

export interface DatabaseStates {
  isPaused(database: string): boolean;
  isDisabled(database: string): boolean;
  /** PAUSE without a database. */
  readonly allPaused: boolean;
}

export function takeSnapshot(src: SnapshotSource, now = Date.now()): WorkerSnapshot {
  const { config } = src;
  const pools: Pool[] = [...src.pools];
  const active = new Map<Pool, number>();
  const clients: ConnectionRow[] = [];
  const clientOfServer = new Map<number, number>();
  let clientPrepared = 0;
  for (const c of src.clients) {
    const server = c.currentServer();
    if (server) clientOfServer.set(server.id, c.id);
    if (!c.isWaiting) active.set(c.pool, (active.get(c.pool) ?? 0) + 1);
    const row = clientRow(src.worker, c, server?.id ?? null);
    clientPrepared += row.prepared_statements;
    clients.push(row);
  }
  const servers: ConnectionRow[] = [];
  const poolRows: PoolRow[] = [];
  let serverPrepared = 0;
  for (const pool of pools) {
    const s = pool.state(now);
    poolRows.push({
      database: pool.database,
      user: pool.address.user,
      pool_mode: pool.mode,
      pool_size: pool.size,
      cl_active: active.get(pool) ?? 0,
      cl_waiting: s.waiting,
      cl_active_cancel_req: s.cancelsSent,
      cl_waiting_cancel_req: s.cancelsOpening,
      sv_active: s.active,
      sv_active_cancel: s.cancelsSent,
      sv_being_canceled: s.beingCanceled,
      sv_idle: s.idle,
      sv_used: s.used,
      sv_tested: s.tested,
      sv_login: s.login,
      maxwait_us: Math.round(s.maxWaitMs * 1000),
      load_balance_hosts: loadBalanceHosts(route(config, pool.database)),
      totals: pool.stats.values(),
      last_period: { ...pool.stats.lastPeriod },
    });
    for (const [server, state] of pool.servers(now)) {
      const sock = server.stream;
      serverPrepared += server.statements.size;
      servers.push({
        type: 'S',
        worker: src.worker,
        id: server.id,
        user: pool.address.user,
        database: pool.database,
        state,
        addr: server.address.host,
        port: server.address.port,
        local_addr: sock.localAddress ?? '',
        local_port: sock.localPort ?? 0,
        connect_time: server.createdAt,
        request_time: server.lastUsedAt,
        wait_us: 0,
        close_needed: pool.isCloseNeeded(server) ? 1 : 0,
        link: clientOfServer.get(server.id) ?? null,
        remote_pid: server.processId,
        tls: '',
        application_name: server.params.get('application_name') ?? '',
        prepared_statements: server.statements.size,
        ...socketDetails(sock, server.params),
      });
    }
  }
  const databases = databaseRows(config, pools, clients, src.states);
  const users = userRows(config, poolRows, clients, servers);
  const memory = memoryRows({
    users: users.length,
    databases: databases.length,
    pools: pools.length,
    clients: src.connections,
    servers: servers.length + poolRows.reduce((n, p) => n + p.sv_login, 0),
    serverPreparedStatements: serverPrepared,
    clientPreparedStatements: clientPrepared,
  });
  return {
    worker: src.worker,
    pid: process.pid,
    pools: poolRows,
    databases,
    clients,
    servers,
    users,
    listeners: [...(src.listeners ?? [])].map((l) => listenerRow(src.worker, l)),
    memory,
    connections: src.connections,
    limits: { max_client_conn: config.max_client_conn, max_user_connections: config.max_user_connections },
    paused: src.states?.allPaused ?? false,
    process: processCounterValues(),
  };
}

/** What a snapshot reads of a logged-in client (client/session.ts's ClientSession is one): named here, so stats never import the relay. */
export interface ClientView {
  readonly id: number;
  readonly pool: Pool;
  readonly isWaiting: boolean;
  readonly stream: Duplex;
  readonly connectedAt: number;
  readonly lastRequestAt: number;
  readonly params: ReadonlyMap<string, string>;
  /** Named prepared statements the client keeps (statement renaming); 0 if not given. */
  readonly preparedStatements?: number;
  /** Milliseconds the client has waited for a server so far, 0 when it is not waiting; 0 if not given. */
  readonly waitingForMs?: number;
  currentServer(): { readonly id: number } | null;
}

function clientRow(worker: number, c: ClientView, serverId: number | null): ConnectionRow {
  const sock = c.stream as tls.TLSSocket;
  const secure = sock instanceof tls.TLSSocket;
  const cipher = secure ? sock.getCipher() : null;
  return {
    type: 'C',
    worker,
    id: c.id,
    user: c.pool.address.user,
    database: c.pool.database,
    state: c.isWaiting ? 'waiting' : 'active',
    addr: sock.remoteAddress ?? '',
    port: sock.remotePort ?? 0,
    local_addr: sock.localAddress ?? '',
    local_port: sock.localPort ?? 0,
    connect_time: c.connectedAt,
    request_time: c.lastRequestAt,
    wait_us: c.isWaiting ? Math.round((c.waitingForMs ?? 0) * 1000) : 0,
    close_needed: 0,
    link: serverId,
    remote_pid: 0,
    tls: secure ? `${sock.getProtocol() ?? ''}/${cipher?.standardName ?? cipher?.name ?? ''}` : '',
    application_name: c.params.get('application_name') ?? '',
    prepared_statements: c.preparedStatements ?? 0,
    ...socketDetails(sock, c.params),
  };
}

/**
 * A socket's descriptor and buffers, and the tracked parameters. Node has no
 * public accessor for a socket's fd: `_handle.fd` is libuv's (a TLS socket's
 * handle reports its TCP socket's), -1 or absent where there is none.
 */
function socketDetails(sock: Duplex, params: ReadonlyMap<string, string>): Pick<ConnectionRow, 'fd' | 'recv_pending' | 'send_pending' | 'client_encoding' | 'std_strings' | 'datestyle' | 'timezone'> {
  return {
    fd: handleFd(sock),
    recv_pending: sock.readableLength,
    send_pending: sock.writableLength,
    client_encoding: params.get('client_encoding') ?? null,
    std_strings: params.get('standard_conforming_strings') ?? null,
    datestyle: params.get('DateStyle') ?? null,
    timezone: params.get('TimeZone') ?? null,
  };
}

function handleFd(handleOwner: object): number | null {
  const fd = (handleOwner as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}

function listenerRow(worker: number, server: net.Server): ListenerRow {
  const a = server.address();
  return typeof a === 'string' || a === null ? { worker, fd: handleFd(server), addr: a ?? '', port: 0 } : { worker, fd: handleFd(server), addr: a.address, port: a.port };
}

/** PgBouncer shows load_balance_hosts only for a host list (`host=a,b`). */
function loadBalanceHosts(r: Route | null): string | null {
  return r && r.host.includes(',') ? r.entry.load_balance_hosts : null;
}

/** Configured entries (but `*`) and every database a pool was made for, with its server and client counts here. */
function databaseRows(config: Config, pools: readonly Pool[], clients: readonly ConnectionRow[], states: DatabaseStates | undefined): DatabaseRow[] {
  const names = new Set(Object.keys(config.databases).filter((n) => n !== '*'));
  for (const p of pools) names.add(p.database);
  const clientsOf = countBy(clients, (c) => c.database);
  const rows: DatabaseRow[] = [];
  for (const name of names) {
    const r = route(config, name);
    if (!r) continue;
    let current = 0;
    for (const p of pools) if (p.database === name) current += p.total;
    rows.push({
      name,
      host: r.host,
      port: r.port,
      database: r.dbname,
      force_user: r.entry.user,
      pool_size: r.poolSize,
      min_pool_size: r.entry.min_pool_size ?? config.min_pool_size,
      reserve_pool: r.entry.reserve_pool_size ?? config.reserve_pool_size,
      pool_mode: r.entry.pool_mode,
      max_connections: r.entry.max_db_connections ?? config.max_db_connections,
      current_connections: current,
      server_lifetime: r.entry.server_lifetime ?? config.server_lifetime,
      load_balance_hosts: loadBalanceHosts(r),
      max_client_connections: r.entry.max_db_client_connections ?? config.max_db_client_connections,
      current_client_connections: clientsOf.get(name) ?? 0,
      paused: states?.isPaused(name) ? 1 : 0,
      disabled: states?.isDisabled(name) ? 1 : 0,
    });
  }
  return rows;
}

/** Users configured in `users:` and those with a pool or a client here; counts are this worker's. */
function userRows(config: Config, pools: readonly PoolRow[], clients: readonly ConnectionRow[], servers: readonly ConnectionRow[]): UserRow[] {
  const names = new Set(Object.keys(config.users));
  for (const p of pools) names.add(p.user);
  for (const c of clients) names.add(c.user);
  const clientsOf = countBy(clients, (c) => c.user);
  const serversOf = countBy(servers, (s) => s.user);
  for (const p of pools) serversOf.set(p.user, (serversOf.get(p.user) ?? 0) + p.sv_login);
  return [...names].map((name) => {
    const entry = config.users[name];
    return {
      name,
      pool_size: entry?.pool_size ?? null,
      reserve_pool_size: null, // users: has no reserve_pool_size in pg-ingress
      pool_mode: entry?.pool_mode ?? null,
      max_user_connections: entry?.max_user_connections ?? config.max_user_connections,
      current_connections: serversOf.get(name) ?? 0,
      max_user_client_connections: entry?.max_user_client_connections ?? config.max_user_client_connections,
      current_client_connections: clientsOf.get(name) ?? 0,
    };
  });
}

function countBy<T>(items: readonly T[], key: (t: T) => string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const t of items) counts.set(key(t), (counts.get(key(t)) ?? 0) + 1);
  return counts;
}
