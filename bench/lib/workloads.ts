// What is measured, and against what. Workload ids are what `--only` takes.
import type { ProxyProcess } from './setup.js';

export type TargetId = 'direct' | 'direct-tls' | 'pgbouncer' | 'pg-ingress' | 'node-pipe';

export interface Workload {
  id: string;
  title: string;
  clients: number;
  /** Which proxy database: bench_tx, bench_session, or bench_small (transaction pool of SMALL_POOL_SIZE). */
  pool: 'tx' | 'session' | 'tx-small';
  args: readonly string[];
  /** Run against PostgreSQL directly too (not for 1000 clients: max_connections is 300). */
  direct: boolean;
  /** Run through the Node.js TLS pipe too (one server connection per client, so only where that is fair). */
  pipe: boolean;
  /** Smoke runs use `-t` with this many transactions per client (a `-T` clock would include the logins). */
  smokeTx: number;
  /** Errors here are the expected outcome for some targets (reported, not a failure). */
  errorsExpectedFor?: readonly TargetId[];
}

export function workloads(bigClients: number): Workload[] {
  return [
    { id: 'select-tx-10', title: '`-S`, 10 clients, transaction pool', clients: 10, pool: 'tx', args: ['-S'], direct: true, pipe: true, smokeTx: 200 },
    { id: 'select-tx-100', title: '`-S`, 100 clients, pool 20, transaction', clients: 100, pool: 'tx', args: ['-S'], direct: true, pipe: false, smokeTx: 20 },
    { id: 'select-session-10', title: '`-S`, 10 clients, session pool', clients: 10, pool: 'session', args: ['-S'], direct: true, pipe: true, smokeTx: 200 },
    { id: 'tpcb-session-20', title: 'TPC-B-like, 20 clients, session pool', clients: 20, pool: 'session', args: [], direct: true, pipe: true, smokeTx: 10 },
    { id: 'connect-select-10', title: '`-C -S` (new TLS + SCRAM login per tx), 10 clients, transaction pool', clients: 10, pool: 'tx', args: ['-C', '-S'], direct: true, pipe: false, smokeTx: 5 },
    {
      id: 'prepared-tx-10',
      title: '`-M prepared -S`, 10 clients, transaction pool',
      clients: 10,
      pool: 'tx',
      args: ['-M', 'prepared', '-S'],
      direct: true,
      pipe: true,
      smokeTx: 200,
      errorsExpectedFor: ['pgbouncer'], // PgBouncer < 1.21 does not track prepared statements
    },
    // 8 clients on 2 servers: with workers > 1 the budget is spent while another worker holds an
    // idle server, so the primary has that worker close it for this worker's waiter (the cross-worker yield).
    { id: 'select-tx-contended', title: '`-S`, 8 clients, pool 2, transaction', clients: 8, pool: 'tx-small', args: ['-S'], direct: false, pipe: false, smokeTx: 50 },
    { id: 'select-tx-big', title: `\`-S\`, ${bigClients} clients, pool 20, transaction`, clients: bigClients, pool: 'tx', args: ['-S'], direct: false, pipe: false, smokeTx: 10 },
  ];
}

export interface Target {
  id: TargetId;
  label: string;
  tls: boolean;
  port: number;
  /** The database name clients ask for: the proxy's alias, or the upstream name where nothing routes. */
  database: (w: Workload) => string;
  /** The proxy process (null for PostgreSQL itself). */
  proxy: ProxyProcess | null;
  /** Starts the proxy again after it died (proxies only). */
  restart: (() => Promise<ProxyProcess>) | null;
}
