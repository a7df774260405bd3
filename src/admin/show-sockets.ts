// SHOW CLIENTS, SERVERS, SOCKETS, ACTIVE_SOCKETS and FDS: one row per
// connection of every worker, in PgBouncer 1.25's columns (admin.c's
// socket_header and admin_show_fds). Connection ids are per worker, so the
// rendered ptr, link and id carry the worker.
import { globalClientId } from '../workers/worker-id.js';
import { noticeMessage } from '../protocol/backend.js';
import type { ClusterStats } from '../stats/merge.js';
import type { ConnectionRow } from '../stats/snapshot.js';
import { ColumnType, resultSet, timestamp, type Cell, type Column } from './wire.js';

const text = (name: string): Column => ({ name, type: ColumnType.Text });
const int = (name: string): Column => ({ name, type: ColumnType.Int8 });
const time = (name: string): Column => ({ name, type: ColumnType.Timestamp });
const bytea = (name: string): Column => ({ name, type: ColumnType.Bytea });

const SOCKET_COLUMNS: readonly Column[] = [
  ...['type', 'user', 'database', 'replication', 'state', 'addr'].map(text),
  int('port'),
  text('local_addr'),
  int('local_port'),
  time('connect_time'),
  time('request_time'),
  ...['wait', 'wait_us', 'close_needed'].map(int),
  ...['ptr', 'link'].map(text),
  int('remote_pid'),
  ...['tls', 'application_name'].map(text),
  ...['prepared_statements', 'id'].map(int),
];

/** SHOW SOCKETS' extra columns. PgBouncer's iobuf offsets have no equivalent here (0); pkt_avail and send_avail are the bytes the socket holds read and queued to write. */
const DEBUG_COLUMNS: readonly Column[] = ['recv_pos', 'pkt_pos', 'pkt_remain', 'send_pos', 'send_remain', 'pkt_avail', 'send_avail'].map(int);

const other = (r: ConnectionRow): 'C' | 'S' => (r.type === 'C' ? 'S' : 'C');
const ref = (type: 'C' | 'S', worker: number, id: number): string => `${type}-${worker}-${id}`;

function socketRow(r: ConnectionRow, state: string): Cell[] {
  return [
    r.type,
    r.user,
    r.database,
    'none', // replication connections are refused at login
    // As PgBouncer 1.25: a client in the active list without a server is idle.
    r.link === null && state === 'active' ? 'idle' : state,
    r.addr,
    r.port,
    r.local_addr,
    r.local_port,
    timestamp(r.connect_time),
    timestamp(r.request_time),
    Math.floor(r.wait_us / 1e6),
    r.wait_us % 1e6,
    r.close_needed,
    ref(r.type, r.worker, r.id),
    r.link === null ? '' : ref(other(r), r.worker, r.link),
    r.remote_pid,
    r.tls,
    r.application_name,
    r.prepared_statements,
    globalClientId(r.worker, r.id),
  ];
}

export function showConnections(rows: readonly ConnectionRow[]): Buffer {
  return resultSet(SOCKET_COLUMNS, rows.map((r) => socketRow(r, r.state)));
}

/** SHOW SOCKETS (every connection) or ACTIVE_SOCKETS (those with bytes buffered), with PgBouncer's list names as state. */
export function showSockets(stats: ClusterStats, onlyActive: boolean): Buffer {
  const rows = [...stats.clients, ...stats.servers]
    .filter((r) => !onlyActive || r.recv_pending + r.send_pending > 0)
    .map((r) => [...socketRow(r, `${r.type === 'C' ? 'cl' : 'sv'}_${r.state}`), 0, 0, 0, 0, 0, r.recv_pending, r.send_pending]);
  return resultSet([...SOCKET_COLUMNS, ...DEBUG_COLUMNS], rows);
}

const FDS_COLUMNS: readonly Column[] = [
  int('fd'),
  ...['task', 'user', 'database', 'addr'].map(text),
  ...['port', 'cancel', 'link'].map(int),
  ...['client_encoding', 'std_strings', 'datestyle', 'timezone', 'password'].map(text),
  ...['scram_client_key', 'scram_server_key'].map(bytea),
];

/**
 * SHOW FDS (admin_users only; the caller checks). PgBouncer sends these rows
 * to hand its sockets to a new process (online restart); pg-ingress cannot,
 * so it only lists them. Columns that would carry a credential are always
 * NULL: password and the SCRAM keys, and the cancel key of each connection
 * (it lets its holder cancel that connection's queries). fd numbers are per
 * worker process.
 */
export function showFds(stats: ClusterStats): Buffer {
  const fdOf = new Map<string, number | null>();
  for (const r of [...stats.clients, ...stats.servers]) fdOf.set(ref(r.type, r.worker, r.id), r.fd);
  const rows: Cell[][] = stats.listeners.map((l) => [l.fd, 'pooler', null, null, l.addr, l.port, 0, 0, null, null, null, null, null, null, null]);
  for (const r of [...stats.clients, ...stats.servers]) {
    const link = r.link === null ? 0 : (fdOf.get(ref(other(r), r.worker, r.link)) ?? 0);
    rows.push([r.fd, r.type === 'C' ? 'client' : 'server', r.user, r.database, r.addr, r.port, null, link, r.client_encoding, r.std_strings, r.datestyle, r.timezone, null, null, null]);
  }
  const perWorker = stats.workers.length > 1 ? ' File descriptor numbers are per worker process.' : '';
  const notice = noticeMessage('N', {
    severity: 'NOTICE',
    code: '00000',
    message: 'pg-ingress lists its sockets but cannot hand them to another process (no online restart)',
    detail: `password, scram_client_key, scram_server_key and cancel are never shown.${perWorker}`,
  });
  return Buffer.concat([notice, resultSet(FDS_COLUMNS, rows)]);
}
