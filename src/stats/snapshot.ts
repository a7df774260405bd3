// One worker's statistics at one moment: its pools, clients, servers and
// counters, as plain JSON-safe rows (they cross the IPC channel to the primary).
// The column names are PgBouncer's (SHOW POOLS, SHOW CLIENTS, …).
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { route } from '../client/router.js';
import type { Config, PoolMode } from '../config/index.js';
import type { Pool } from '../pool/pool.js';
import type { CounterValues } from './counters.js';
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
  /** The id of the paired connection (server for a client, client for a server). */
  link: number | null;
  remote_pid: number;
  tls: string;
  application_name: string;
  prepared_statements: number;
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
  reserve_pool: number;
  pool_mode: PoolMode | null;
  max_connections: number;
  current_connections: number;
}

export interface WorkerSnapshot {
  worker: number;
  pid: number;
  pools: PoolRow[];
  databases: DatabaseRow[];
  clients: ConnectionRow[];
  servers: ConnectionRow[];
  /** Accepted connections, logged in or not (PgBouncer's used_clients). */
  connections: number;
  /** Limits each worker enforces on its own. */
  limits: { max_client_conn: number; max_user_connections: number };
  /** This process's counters that belong to no pool (src/stats/process-counters.ts); takeSnapshot always sets them. */
  process?: ProcessCounterValues;
}

export interface SnapshotSource {
  worker: number;
  config: Config;
  pools: Iterable<Pool>;
  clients: Iterable<ClientView>;
  /** Client connections the listener holds, including those still logging in. */
  connections: number;
}

export function takeSnapshot(src: SnapshotSource, now = Date.now()): WorkerSnapshot {
  const pools: Pool[] = [...src.pools];
  const active = new Map<Pool, number>();
  const clients: ConnectionRow[] = [];
  const clientOfServer = new Map<number, number>();
  for (const c of src.clients) {
    const server = c.currentServer();
    if (server) clientOfServer.set(server.id, c.id);
    if (!c.isWaiting) active.set(c.pool, (active.get(c.pool) ?? 0) + 1);
    clients.push(clientRow(src.worker, c, server?.id ?? null));
  }
  const servers: ConnectionRow[] = [];
  const poolRows: PoolRow[] = [];
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
      totals: pool.stats.values(),
      last_period: { ...pool.stats.lastPeriod },
    });
    for (const [server, state] of pool.servers(now)) {
      const sock = server.stream;
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
        link: clientOfServer.get(server.id) ?? null,
        remote_pid: server.processId,
        tls: '',
        application_name: server.params.get('application_name') ?? '',
        prepared_statements: server.statements.size,
      });
    }
  }
  return { worker: src.worker, pid: process.pid, pools: poolRows, databases: databaseRows(src.config, pools), clients, servers, connections: src.connections, limits: { max_client_conn: src.config.max_client_conn, max_user_connections: src.config.max_user_connections }, process: processCounterValues() };
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
    wait_us: 0,
    link: serverId,
    remote_pid: 0,
    tls: secure ? `${sock.getProtocol() ?? ''}/${cipher?.standardName ?? cipher?.name ?? ''}` : '',
    application_name: c.params.get('application_name') ?? '',
    prepared_statements: 0,
  };
}

/** Configured entries (but `*`) and every database a pool was made for, with its server count here. */
function databaseRows(config: Config, pools: readonly Pool[]): DatabaseRow[] {
  const names = new Set(Object.keys(config.databases).filter((n) => n !== '*'));
  for (const p of pools) names.add(p.database);
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
    });
  }
  return rows;
}
