// The admin console's commands: PgBouncer's SHOW commands over the merged
// statistics of every worker, with PgBouncer's column names. Each answer is the
// wire bytes of one result set (or an ErrorResponse), without ReadyForQuery.
import type { Config } from '../config/index.js';
import { configSchema } from '../config/index.js';
import { commandComplete, emptyQueryResponse, noticeMessage } from '../protocol/backend.js';
import { PgError, SqlState } from '../protocol/pg-error.js';
import { SECRET_KEYS } from '../config/schema.js';
import type { CounterValues } from '../stats/counters.js';
import type { ClusterStats } from '../stats/merge.js';
import type { ConnectionRow } from '../stats/snapshot.js';
import { VERSION } from '../stats/version.js';
import { ColumnType, resultSet, timestamp, type Cell, type Column } from './wire.js';

export interface CommandContext {
  config: Config;
  /** Every worker's statistics, merged. */
  stats: () => Promise<ClusterStats>;
  /** In admin_users (else only in stats_users). */
  isAdmin: boolean;
  /** Seconds the avg_ columns of SHOW STATS cover. */
  statsPeriodSeconds: number;
}

/** PgBouncer's syntax-error SQLSTATE would be 08P01; 42601 (syntax_error) is what Postgres uses, and clients understand it. */
const SYNTAX_ERROR = '42601';

const SHOW_COMMANDS = ['HELP', 'POOLS', 'STATS', 'STATS_TOTALS', 'STATS_AVERAGES', 'CLIENTS', 'SERVERS', 'DATABASES', 'CONFIG', 'VERSION', 'LISTS'] as const;

/** PgBouncer commands pg-ingress does not have, and why. */
const UNSUPPORTED: Readonly<Record<string, string>> = {
  RELOAD: 'configuration is read once at start; restart to change it (TLS certificates reload by themselves)',
  PAUSE: 'pausing is not implemented',
  RESUME: 'pausing is not implemented',
  SUSPEND: 'online restart is not implemented; run replicas and roll them',
  SHUTDOWN: 'send SIGTERM to the process instead',
  KILL: 'not implemented',
  KILL_CLIENT: 'not implemented',
  RECONNECT: 'not implemented; server connections are renewed by server_lifetime',
  DISABLE: 'not implemented',
  ENABLE: 'not implemented',
  WAIT_CLOSE: 'not implemented',
  SET: 'settings cannot be changed at run time',
};

const text = (name: string): Column => ({ name, type: ColumnType.Text });
const int = (name: string): Column => ({ name, type: ColumnType.Int8 });
const time = (name: string): Column => ({ name, type: ColumnType.Timestamp });

/** Answers one statement of a simple Query (its text, without the trailing semicolon). */
export async function runCommand(statement: string, ctx: CommandContext): Promise<Buffer> {
  const words = statement.trim().split(/\s+/).filter((w) => w !== '');
  if (words.length === 0) return emptyQueryResponse();
  const verb = words[0]!.toUpperCase();
  if (verb === 'SHOW') {
    const what = (words[1] ?? '').toUpperCase();
    if (words.length === 2 && (SHOW_COMMANDS as readonly string[]).includes(what)) return show(what as (typeof SHOW_COMMANDS)[number], ctx);
    return invalid(statement);
  }
  if (verb in UNSUPPORTED) {
    if (!ctx.isAdmin) return error(SqlState.insufficientPrivilege, 'admin access needed', `${verb} needs a user in admin_users; stats_users may only use SHOW`);
    return error(SqlState.featureNotSupported, `${verb} is not supported by pg-ingress`, UNSUPPORTED[verb]);
  }
  return invalid(statement);
}

function invalid(statement: string): Buffer {
  const shown = statement.length > 200 ? `${statement.slice(0, 200)}…` : statement;
  return error(SYNTAX_ERROR, `invalid command '${shown}', use SHOW HELP;`);
}

function error(code: string, message: string, hint?: string): Buffer {
  return new PgError({ severity: 'ERROR', code, message, hint }).toBuffer();
}

async function show(what: (typeof SHOW_COMMANDS)[number], ctx: CommandContext): Promise<Buffer> {
  switch (what) {
    case 'HELP':
      return Buffer.concat([
        noticeMessage('N', { severity: 'NOTICE', code: '00000', message: 'Console usage', detail: `\n\tSHOW HELP|${SHOW_COMMANDS.filter((c) => c !== 'HELP').join('|')}` }),
        commandComplete('SHOW'),
      ]);
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
    case 'CLIENTS':
      return showConnections((await ctx.stats()).clients);
    case 'SERVERS':
      return showConnections((await ctx.stats()).servers);
    case 'DATABASES':
      return showDatabases(await ctx.stats());
    case 'LISTS':
      return showLists(await ctx.stats());
  }
}

function showPools(stats: ClusterStats): Buffer {
  const columns = [text('database'), text('user'), ...['cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active', 'sv_active_cancel', 'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login', 'maxwait', 'maxwait_us'].map(int), text('pool_mode')];
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
  ]);
  return resultSet(columns, rows);
}

// SHOW STATS: totals since start, and averages over the last stats period (per second for counts and bytes, per transaction/query/assignment for times).
const TOTAL_COLUMNS: ReadonlyArray<[string, keyof CounterValues]> = [
  ['xact_count', 'xact_count'],
  ['query_count', 'query_count'],
  ['server_assignment_count', 'server_assignment_count'],
  ['received', 'received'],
  ['sent', 'sent'],
  ['xact_time', 'xact_time'],
  ['query_time', 'query_time'],
  ['wait_time', 'wait_time'],
];

function averages(p: CounterValues, seconds: number): number[] {
  const per = (a: number, b: number): number => (b > 0 ? Math.round(a / b) : 0);
  return [per(p.xact_count, seconds), per(p.query_count, seconds), per(p.server_assignment_count, seconds), per(p.received, seconds), per(p.sent, seconds), per(p.xact_time, p.xact_count), per(p.query_time, p.query_count), per(p.wait_time, p.server_assignment_count)];
}

function showStats(what: 'STATS' | 'STATS_TOTALS' | 'STATS_AVERAGES', stats: ClusterStats, period: number): Buffer {
  // PgBouncer's names: total_received but avg_recv; the _TOTALS/_AVERAGES variants use bytes_received.
  const totalNames = TOTAL_COLUMNS.map(([n]) => `total_${n}`);
  const avgNames = ['avg_xact_count', 'avg_query_count', 'avg_server_assignment_count', 'avg_recv', 'avg_sent', 'avg_xact_time', 'avg_query_time', 'avg_wait_time'];
  const plainNames = ['xact_count', 'query_count', 'server_assignment_count', 'bytes_received', 'bytes_sent', 'xact_time', 'query_time', 'wait_time'];
  const names = what === 'STATS' ? [...totalNames, ...avgNames] : plainNames;
  const rows = stats.stats.map((db): Cell[] => {
    const totals = TOTAL_COLUMNS.map(([, k]) => db.totals[k]);
    const avgs = averages(db.last_period, period);
    return [db.database, ...(what === 'STATS' ? [...totals, ...avgs] : what === 'STATS_TOTALS' ? totals : avgs)];
  });
  return resultSet([text('database'), ...names.map(int)], rows);
}

function showConnections(rows: readonly ConnectionRow[]): Buffer {
  const columns = [text('type'), text('user'), text('database'), text('state'), text('addr'), int('port'), text('local_addr'), int('local_port'), time('connect_time'), time('request_time'), int('wait'), int('wait_us'), int('close_needed'), text('ptr'), text('link'), int('remote_pid'), text('tls'), text('application_name'), int('prepared_statements'), int('id')];
  const other = (r: ConnectionRow): string => (r.type === 'C' ? 'S' : 'C');
  return resultSet(
    columns,
    rows.map((r) => [
      r.type,
      r.user,
      r.database,
      r.state,
      r.addr,
      r.port,
      r.local_addr,
      r.local_port,
      timestamp(r.connect_time),
      timestamp(r.request_time),
      Math.floor(r.wait_us / 1e6),
      r.wait_us % 1e6,
      0,
      // Connection numbers are per worker: the worker makes them unique.
      `${r.type}-${r.worker}-${r.id}`,
      r.link === null ? '' : `${other(r)}-${r.worker}-${r.link}`,
      r.remote_pid,
      r.tls,
      r.application_name,
      r.prepared_statements,
      r.worker * 2 ** 32 + r.id,
    ]),
  );
}

function showDatabases(stats: ClusterStats): Buffer {
  const columns = [text('name'), text('host'), int('port'), text('database'), text('force_user'), int('pool_size'), int('min_pool_size'), int('reserve_pool'), text('pool_mode'), int('max_connections'), int('current_connections'), int('paused'), int('disabled')];
  const rows = stats.databases.map((d) => [d.name, d.host, d.port, d.database, d.force_user, d.pool_size, d.min_pool_size, d.reserve_pool, d.pool_mode, d.max_connections, d.current_connections, 0, 0]);
  return resultSet(columns, rows);
}

function showLists(stats: ClusterStats): Buffer {
  const l = stats.lists;
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

const DEFAULTS = configSchema.parse({}) as unknown as Record<string, unknown>;

/** Every scalar setting with its value and default; secrets are never shown. */
function showConfig(config: Config): Buffer {
  const shown = (v: unknown): string => (v === null || v === undefined ? '' : Array.isArray(v) ? v.join(',') : String(v));
  const rows: Cell[][] = [];
  for (const [key, value] of Object.entries(config)) {
    if (key === 'databases' || key === 'users' || key === 'config_file' || SECRET_KEYS.has(key) || key.includes('password')) continue;
    rows.push([key, shown(value), shown(DEFAULTS[key]), 'no']);
  }
  return resultSet([text('key'), text('value'), text('default'), text('changeable')], rows);
}
