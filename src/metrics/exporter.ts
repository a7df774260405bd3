// The Prometheus view of merged statistics, under the names
// prometheus-community/pgbouncer_exporter gives them, so its dashboards and
// alerts work unchanged. Counters appear twice: `pgbouncer_stats_*` (the
// exporter's older names, which most dashboards use) and `pgbouncer_stats_totals_*`
// (its current ones). Labels are database and user names only.
import { Counter, Gauge, Registry } from 'prom-client';
import type { CounterValues } from '../stats/counters.js';
import type { ClusterStats } from '../stats/merge.js';
import type { ProcessCounterValues } from '../stats/process-counters.js';
import { VERSION } from '../stats/version.js';

const US = 1e-6;

/** SHOW STATS column → exporter metric suffix, and the factor to its unit. */
const STATS: ReadonlyArray<[keyof CounterValues, string, number, string]> = [
  ['query_count', 'queries_pooled_total', 1, 'Total number of SQL queries pooled'],
  ['query_time', 'queries_duration_seconds_total', US, 'Total number of seconds spent when actively connected to PostgreSQL, executing queries'],
  ['received', 'received_bytes_total', 1, 'Total volume in bytes of network traffic received from clients'],
  ['sent', 'sent_bytes_total', 1, 'Total volume in bytes of network traffic sent to clients'],
  ['wait_time', 'client_wait_seconds_total', US, 'Time spent by clients waiting for a server in seconds'],
  ['xact_count', 'sql_transactions_pooled_total', 1, 'Total number of SQL transactions pooled'],
  ['xact_time', 'server_in_transaction_seconds_total', US, 'Total number of seconds spent when connected to PostgreSQL in a transaction, either idle in transaction or executing queries'],
  ['server_assignment_count', 'server_assignments_total', 1, 'Total times a server was assigned to a client'],
];

/** SHOW POOLS column → exporter metric suffix. */
const POOLS: ReadonlyArray<[keyof ClusterStats['pools'][number], string, string]> = [
  ['cl_active', 'client_active_connections', 'Client connections linked to server connection and able to process queries'],
  ['cl_waiting', 'client_waiting_connections', 'Client connections waiting on a server connection'],
  ['sv_active', 'server_active_connections', 'Server connections linked to a client connection'],
  ['sv_idle', 'server_idle_connections', 'Server connections idle and ready for a client query'],
  ['sv_used', 'server_used_connections', 'Server connections idle more than server_check_delay, needing server_check_query'],
  ['sv_tested', 'server_testing_connections', 'Server connections currently running either server_reset_query or server_check_query'],
  ['sv_login', 'server_login_connections', 'Server connections currently in the process of logging in'],
];

/** SHOW LISTS rows → exporter metric names. */
const LISTS: ReadonlyArray<[keyof ClusterStats['lists'], string, string]> = [
  ['databases', 'pgbouncer_databases', 'Count of databases'],
  ['users', 'pgbouncer_users', 'Count of users'],
  ['pools', 'pgbouncer_pools', 'Count of pools'],
  ['used_clients', 'pgbouncer_used_clients', 'Count of used clients'],
  ['login_clients', 'pgbouncer_login_clients', 'Count of clients in login state'],
  ['used_servers', 'pgbouncer_used_servers', 'Count of used servers'],
];

/** Counters that belong to no pool; pgbouncer_exporter has no names for them, so they carry ours. */
const PROCESS: ReadonlyArray<[keyof ProcessCounterValues, string, string]> = [
  ['auth_failures', 'pg_ingress_auth_failures_total', 'Client logins refused for a wrong password or an unknown user'],
  ['auth_throttled', 'pg_ingress_auth_throttled_total', 'Client logins refused by auth-failure throttling (auth_failure_limit), before any lookup'],
  ['auth_lookups_rejected', 'pg_ingress_auth_lookups_rejected_total', 'Client logins refused because auth_max_concurrent_lookups lookups were running and the wait queue was full'],
  ['uncaught_faults', 'pg_ingress_uncaught_faults_total', 'Exceptions and rejections caught by the last-resort handler (each one is a bug to report)'],
];

const DB_LABELS = ['name', 'database'] as const;
const DATABASES: ReadonlyArray<['pool_size' | 'reserve_pool' | 'max_connections' | 'current_connections', string, string]> = [
  ['pool_size', 'pgbouncer_databases_pool_size', 'Maximum number of server connections'],
  ['reserve_pool', 'pgbouncer_databases_reserve_pool', 'Maximum number of additional connections for this database'],
  ['max_connections', 'pgbouncer_databases_max_connections', 'Maximum number of allowed connections for this database'],
  ['current_connections', 'pgbouncer_databases_current_connections', 'Current number of connections for this database'],
];

export class ExporterMetrics {
  readonly registry = new Registry();
  /** Everything registered, to reset before each update (series of a pool that is gone disappear). */
  private readonly all: Array<Gauge | Counter> = [];
  private readonly up = this.gauge('pgbouncer_up', 'The pgbouncer scrape succeeded');
  private readonly version = this.gauge('pgbouncer_version_info', 'The pgbouncer version info', ['version']);
  private readonly workers = this.gauge('pg_ingress_workers_scraped', 'Worker processes whose statistics are included in this scrape');
  private readonly maxClientConn = this.gauge('pgbouncer_config_max_client_connections', 'Config maximum number of client connections');
  private readonly maxUserConn = this.gauge('pgbouncer_config_max_user_connections', 'Config maximum number of server connections per user');
  private readonly stats = STATS.flatMap(([column, suffix, factor, help]) =>
    ['pgbouncer_stats_', 'pgbouncer_stats_totals_'].map((prefix) => ({ column, factor, metric: this.counter(prefix + suffix, help, ['database']) })),
  );
  private readonly pools = POOLS.map(([column, suffix, help]) => ({ column, metric: this.gauge(`pgbouncer_pools_${suffix}`, help, ['database', 'user']) }));
  private readonly maxWait = this.gauge('pgbouncer_pools_client_maxwait_seconds', 'Age of oldest unserved client connection, in seconds', ['database', 'user']);
  private readonly lists = LISTS.map(([row, name, help]) => ({ row, metric: this.gauge(name, help) }));
  private readonly databases = DATABASES.map(([column, name, help]) => ({ column, metric: this.gauge(name, help, DB_LABELS) }));
  private readonly reloads = this.counter('pg_ingress_config_reloads_total', 'Configuration reloads (SIGHUP, RELOAD, SET) by result: ok, or failed (the running configuration stayed)', ['result']);
  private readonly process = PROCESS.map(([column, name, help]) => ({ column, metric: this.counter(name, help, []) }));

  /** Replaces every value with those of `stats`; null when no worker answered. */
  update(stats: ClusterStats | null): void {
    for (const m of this.all) m.reset();
    this.up.set(stats && stats.workers.length > 0 ? 1 : 0);
    this.version.set({ version: VERSION }, 1);
    if (!stats) return;
    this.workers.set(stats.workers.length);
    this.maxClientConn.set(stats.limits.max_client_conn);
    this.maxUserConn.set(stats.limits.max_user_connections);
    for (const db of stats.stats) {
      for (const { column, factor, metric } of this.stats) metric.inc({ database: db.database }, db.totals[column] * factor);
    }
    for (const p of stats.pools) {
      const labels = { database: p.database, user: p.user };
      for (const { column, metric } of this.pools) metric.set(labels, p[column] as number);
      this.maxWait.set(labels, p.maxwait_us * US);
    }
    for (const { row, metric } of this.lists) metric.set(stats.lists[row]);
    for (const d of stats.databases) {
      for (const { column, metric } of this.databases) metric.set({ name: d.name, database: d.database }, d[column]);
    }
    for (const { column, metric } of this.process) metric.inc(stats.process[column]);
    if (stats.reloads) {
      this.reloads.inc({ result: 'ok' }, stats.reloads.ok);
      this.reloads.inc({ result: 'failed' }, stats.reloads.failed);
    }
  }

  private gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    const g = new Gauge({ name, help, labelNames, registers: [this.registry] });
    this.all.push(g);
    return g;
  }

  private counter(name: string, help: string, labelNames: readonly string[]): Counter {
    const c = new Counter({ name, help, labelNames, registers: [this.registry] });
    this.all.push(c);
    return c;
  }
}
