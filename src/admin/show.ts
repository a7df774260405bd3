// The admin console's SHOW commands over the merged statistics of every
// worker, with PgBouncer 1.25's column names and order (src/admin.c and
// src/stats.c are the reference). Each answer is the wire bytes of one result
// set (or an ErrorResponse), without ReadyForQuery.
import { isSettable } from '../control/reload.js';
import type { Config } from '../config/index.js';
import { configSchema } from '../config/index.js';
import { SECRET_KEYS } from '../config/schema.js';
import { commandComplete, noticeMessage } from '../protocol/backend.js';
import { PgError, SqlState } from '../protocol/pg-error.js';
import type { CounterValues } from '../stats/counters.js';
import type { ClusterStats } from '../stats/merge.js';
import { VERSION } from '../stats/version.js';
import { showConnections, showFds, showSockets } from './show-sockets.js';
import { ColumnType, resultSet, type Cell, type Column } from './wire.js';

export interface ShowContext {
  config: Config;
  /** Every worker's statistics, merged. */
  stats: () => Promise<ClusterStats>;
  /** In admin_users (else only in stats_users). */
  isAdmin: boolean;
  /** Seconds the avg_ columns cover. */
  statsPeriodSeconds: number;
  /** Lines SHOW HELP adds after the SHOW commands (the console's controls). */
  controlsHelp?: readonly string[];
}

/** SHOW HELP's lines, grouped as PgBouncer's. */
const HELP_GROUPS = [
  ['HELP', 'CONFIG', 'DATABASES', 'POOLS', 'CLIENTS', 'SERVERS', 'USERS', 'VERSION'],
  ['PEERS', 'PEER_POOLS'],
  ['FDS', 'SOCKETS', 'ACTIVE_SOCKETS', 'LISTS', 'MEM', 'STATE'],
  ['DNS_HOSTS', 'DNS_ZONES'],
  ['STATS', 'STATS_TOTALS', 'STATS_AVERAGES', 'TOTALS'],
] as const;

export type ShowCommand = (typeof HELP_GROUPS)[number][number];
export const SHOW_COMMANDS: readonly ShowCommand[] = HELP_GROUPS.flat();

export function isShowCommand(what: string): what is ShowCommand {
  return (SHOW_COMMANDS as readonly string[]).includes(what);
}

const text = (name: string): Column => ({ name, type: ColumnType.Text });
const int = (name: string): Column => ({ name, type: ColumnType.Int8 });

export async function show(what: ShowCommand, ctx: ShowContext): Promise<Buffer> {
  switch (what) {
    case 'HELP':
      return help(ctx.controlsHelp ?? []);
    case 'VERSION':
      return resultSet([text('version')], [[`pg-ingress ${VERSION}`]]);
    case 'CONFIG':
      return showConfig(ctx.config);
    case 'POOLS':
      return showPools(await ctx.stats());
    case 'STATS':
    case 'STATS_TOTALS':
    case 'STATS_AVERAGES':
      return showStats(what, await ctx.stats(), ctx.statsPeriodSeconds);
    case 'TOTALS':
      return showTotals(await ctx.stats(), ctx.statsPeriodSeconds);
    case 'CLIENTS':
      return showConnections((await ctx.stats()).clients);
    case 'SERVERS':
      return showConnections((await ctx.stats()).servers);
    case 'SOCKETS':
    case 'ACTIVE_SOCKETS':
      return showSockets(await ctx.stats(), what === 'ACTIVE_SOCKETS');
    case 'FDS':
      // As PgBouncer: it lists every user's connections.
      if (!ctx.isAdmin) return new PgError({ severity: 'ERROR', code: SqlState.insufficientPrivilege, message: 'admin access needed', hint: 'SHOW FDS lists every connection of every user: it needs a user in admin_users' }).toBuffer();
      return showFds(await ctx.stats());
    case 'DATABASES':
      return showDatabases(await ctx.stats());
    case 'USERS':
      return showUsers(await ctx.stats());
    case 'LISTS':
      return showLists(await ctx.stats());
    case 'MEM':
      return showMem(await ctx.stats());
    case 'STATE': {
      // PgBouncer's rows; there is no SUSPEND here.
      const yes = (b: boolean): string => (b ? 'yes' : 'no');
      const { paused } = await ctx.stats();
      return resultSet([text('key'), text('value')], [['active', yes(!paused)], ['paused', yes(paused)], ['suspended', 'no']]);
    }
    // No peering and no DNS cache of its own (Node resolves each connect): PgBouncer's columns, no rows.
    case 'PEERS':
      return resultSet([int('peer_id'), text('host'), int('port'), int('pool_size')], []);
    case 'PEER_POOLS':
      return resultSet(['peer_id', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active_cancel', 'sv_login'].map(int), []);
    case 'DNS_HOSTS':
      return resultSet([text('hostname'), int('ttl'), text('addrs')], []);
    case 'DNS_ZONES':
      return resultSet([text('zonename'), int('serial'), int('count')], []);
  }
}

function help(controls: readonly string[]): Buffer {
  const lines = [...HELP_GROUPS.map((g) => `SHOW ${g.join('|')}`), ...controls];
  return Buffer.concat([noticeMessage('N', { severity: 'NOTICE', code: '00000', message: 'Console usage', detail: lines.map((l) => `\n\t${l}`).join('') }), commandComplete('SHOW')]);
}

function showPools(stats: ClusterStats): Buffer {
  const columns = [text('database'), text('user'), ...['cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active', 'sv_active_cancel', 'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login', 'maxwait', 'maxwait_us'].map(int), text('pool_mode'), text('load_balance_hosts')];
  const rows = stats.pools.map((p) => [
    p.database,
    p.user,
    p.cl_active,
    p.cl_waiting,
    p.cl_active_cancel_req,
    p.cl_waiting_cancel_req,
    p.sv_active,
    p.sv_active_cancel,
    p.sv_being_canceled,
    p.sv_idle,
    p.sv_used,
    p.sv_tested,
    p.sv_login,
    Math.floor(p.maxwait_us / 1e6),
    p.maxwait_us % 1e6,
    p.pool_mode,
    p.load_balance_hosts ?? null,
  ]);
  return resultSet(columns, rows);
}

// SHOW STATS and friends, in stats.c's order. The prepared-statement counts
// (client parses, server parses, binds) are not counted yet: 0.
const COUNTERS: readonly (keyof CounterValues)[] = ['server_assignment_count', 'xact_count', 'query_count', 'received', 'sent', 'xact_time', 'query_time', 'wait_time'];
const NOT_COUNTED = [0, 0, 0];

/** Totals since start, in COUNTERS' order, then the three uncounted ones. */
function totals(c: CounterValues): number[] {
  return [...COUNTERS.map((k) => c[k]), ...NOT_COUNTED];
}

/** The last stats period: per second for counts and bytes, per transaction/query/assignment for times (stats.c's calc_average). */
function averages(p: CounterValues, seconds: number): number[] {
  const per = (a: number, b: number): number => (b > 0 ? Math.round(a / b) : 0);
  return [per(p.server_assignment_count, seconds), per(p.xact_count, seconds), per(p.query_count, seconds), per(p.received, seconds), per(p.sent, seconds), per(p.xact_time, p.xact_count), per(p.query_time, p.query_count), per(p.wait_time, p.server_assignment_count), ...NOT_COUNTED];
}

const PLAIN = ['server_assignment_count', 'xact_count', 'query_count', 'bytes_received', 'bytes_sent', 'xact_time', 'query_time', 'wait_time'];
const PREPARED = ['client_parse_count', 'server_parse_count', 'bind_count'];

function showStats(what: 'STATS' | 'STATS_TOTALS' | 'STATS_AVERAGES', stats: ClusterStats, period: number): Buffer {
  // PgBouncer's names: total_received but avg_recv; the _TOTALS/_AVERAGES variants use bytes_received, and only the averages prefix the prepared-statement counts.
  const statsNames = (prefix: string, recv: string): string[] => ['server_assignment_count', 'xact_count', 'query_count', recv, 'sent', 'xact_time', 'query_time', 'wait_time', ...PREPARED].map((n) => `${prefix}_${n}`);
  const names =
    what === 'STATS' ? [...statsNames('total', 'received'), ...statsNames('avg', 'recv')] : what === 'STATS_TOTALS' ? [...PLAIN, ...PREPARED] : [...PLAIN, ...PREPARED.map((n) => `avg_${n}`)];
  const rows = stats.stats.map((db): Cell[] => {
    const t = totals(db.totals);
    const a = averages(db.last_period, period);
    return [db.database, ...(what === 'STATS' ? [...t, ...a] : what === 'STATS_TOTALS' ? t : a)];
  });
  return resultSet([text('database'), ...names.map(int)], rows);
}

/** SHOW TOTALS: SHOW STATS over every database, one row per figure, named after stats.c's fields (client_bytes, ps_…). */
function showTotals(stats: ClusterStats, period: number): Buffer {
  const sum = (pick: (d: (typeof stats.stats)[number]) => CounterValues): CounterValues => {
    const out = Object.fromEntries(COUNTERS.map((k) => [k, 0])) as unknown as CounterValues;
    for (const d of stats.stats) for (const k of COUNTERS) out[k] += pick(d)[k];
    return out;
  };
  const fields = ['server_assignment_count', 'xact_count', 'query_count', 'client_bytes', 'server_bytes', 'xact_time', 'query_time', 'wait_time', 'ps_client_parse_count', 'ps_server_parse_count', 'ps_bind_count'];
  const t = totals(sum((d) => d.totals));
  const a = averages(sum((d) => d.last_period), period);
  const rows: Cell[][] = [...fields.map((f, i) => [`total_${f}`, t[i]!]), ...fields.map((f, i) => [`avg_${f}`, a[i]!])];
  return resultSet([text('name'), int('value')], rows);
}

function showDatabases(stats: ClusterStats): Buffer {
  const columns = [
    ...['name', 'host'].map(text),
    int('port'),
    ...['database', 'force_user'].map(text),
    ...['pool_size', 'min_pool_size', 'reserve_pool_size', 'server_lifetime'].map(int),
    ...['pool_mode', 'load_balance_hosts'].map(text),
    ...['max_connections', 'current_connections', 'max_client_connections', 'current_client_connections', 'paused', 'disabled'].map(int),
  ];
  const rows = stats.databases.map((d) => [
    d.name,
    d.host,
    d.port,
    d.database,
    d.force_user,
    d.pool_size,
    d.min_pool_size,
    d.reserve_pool,
    d.server_lifetime ?? 0,
    d.pool_mode,
    d.load_balance_hosts ?? null,
    d.max_connections,
    d.current_connections,
    d.max_client_connections ?? 0,
    d.current_client_connections ?? 0,
    d.paused ?? 0,
    d.disabled ?? 0,
  ]);
  return resultSet(columns, rows);
}

function showUsers(stats: ClusterStats): Buffer {
  const columns = [...['name', 'pool_size', 'reserve_pool_size', 'pool_mode'].map(text), ...['max_user_connections', 'current_connections', 'max_user_client_connections', 'current_client_connections'].map(int)];
  const rows = stats.users.map((u) => [u.name, u.pool_size, u.reserve_pool_size, u.pool_mode, u.max_user_connections, u.current_connections, u.max_user_client_connections, u.current_client_connections]);
  return resultSet(columns, rows);
}

function showLists(stats: ClusterStats): Buffer {
  const l = stats.lists;
  // free_*: PgBouncer's slab free lists; Node keeps no freed connection for reuse. No peers, no DNS cache of our own.
  const rows: [string, number][] = [
    ['databases', l.databases],
    ['users', l.users],
    ['peers', 0],
    ['pools', l.pools],
    ['peer_pools', 0],
    ['free_clients', 0],
    ['used_clients', l.used_clients],
    ['login_clients', l.login_clients],
    ['free_servers', 0],
    ['used_servers', l.used_servers],
    ['dns_names', 0],
    ['dns_zones', 0],
    ['dns_queries', 0],
    ['dns_pending', 0],
  ];
  return resultSet([text('list'), int('items')], rows);
}

/** SHOW MEM: src/stats/memory.ts says what each row means; with workers, each row is the sum over them. */
function showMem(stats: ClusterStats): Buffer {
  return resultSet([text('name'), ...['size', 'used', 'free', 'memtotal'].map(int)], stats.memory.map((m) => [m.name, m.size, m.used, m.free, m.memtotal]));
}

const DEFAULTS = configSchema.parse({}) as unknown as Record<string, unknown>;

/** Every scalar setting with its value and default; secrets are never shown. */
function showConfig(config: Config): Buffer {
  const shown = (v: unknown): string => (v === null || v === undefined ? '' : Array.isArray(v) ? v.join(',') : String(v));
  const rows: Cell[][] = [];
  for (const [key, value] of Object.entries(config)) {
    if (key === 'databases' || key === 'users' || key === 'config_file' || key === 'notices' || SECRET_KEYS.has(key) || key.includes('password')) continue;
    rows.push([key, shown(value), shown(DEFAULTS[key]), isSettable(key) ? 'yes' : 'no']);
  }
  return resultSet([text('key'), text('value'), text('default'), text('changeable')], rows);
}
