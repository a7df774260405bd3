// The `pg-ingress` command: run the proxy, print the auth_query setup SQL, or
// check a configuration.
import cluster from 'node:cluster';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type Config } from '../config/index.js';
import { listenForSignals } from '../control/signals.js';
import { ShutdownRequests } from '../control/shutdown-requests.js';
import { configFromPrimary } from '../workers/worker-config.js';
import type { DatabaseStates } from '../workers/messages.js';
import type { Operator } from '../control/control.js';
import { createLogger, logFormat } from '../log/logger.js';
import { convertIni } from './convert.js';
import { initSqlCommand } from './init-sql.js';
import { checkLive } from './check-live.js';
import { runPrimary } from '../workers/primary.js';
import { workerExecArgv } from '../workers/node-flags.js';
import { defaultWorkerCount } from '../workers/cpu-budget.js';
import { currentWorkerId, MAX_WORKER_ID } from '../workers/messages.js';
import { installSafetyNet } from '../process/safety-net.js';

const USAGE = `usage:
  pg-ingress [--config FILE]          run the proxy (default config: none, env and defaults only)
  pg-ingress check [--config FILE] [--live [--user NAME]]
                                      validate the configuration and exit; --live also connects as auth_user
                                      to every database entry, runs auth_query (for NAME too) and checks the
                                      client certificate: one ok/FAIL line each, exit 1 if any FAIL
  pg-ingress convert FILE.ini [--userlist FILE]
                                      print a pgbouncer.ini as the equivalent YAML (secrets stay in the userlist)
  pg-ingress init-sql [--auth-user pgbouncer] [--auth-role pgbouncer_auth] [--database NAME]
                      [--exclude-superusers] [--cnpg [--password-secret pgbouncer-auth]]
                                      print the SQL that sets up auth_query with least privilege (idempotent);
                                      --database also grants CONNECT on NAME, --exclude-superusers makes get_auth
                                      return no row for superusers and their members, --cnpg prints it as
                                      CloudNativePG YAML: postInitApplicationSQL (under spec.bootstrap.initdb)
                                      and roles (under spec.managed) with the auth user's passwordSecret
  pg-ingress demo                     (npm run demo) boot a throwaway PostgreSQL with pg-ingress in front, TLS
                                      required, print how to connect; Ctrl-C stops both and removes its temp dir
Environment variables override the file; see docs/configuration.md.`;

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      'auth-user': { type: 'string' },
      'auth-role': { type: 'string' },
      database: { type: 'string' },
      'exclude-superusers': { type: 'boolean' },
      cnpg: { type: 'boolean' },
      'password-secret': { type: 'string' },
      live: { type: 'boolean' },
      user: { type: 'string' },
      userlist: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const command = positionals[0] ?? 'run';
  if (command === 'init-sql') {
    process.stdout.write(initSqlCommand(values));
    return 0;
  }
  if (command === 'demo') {
    // Loaded only for this command: the proxy never carries it.
    const { runDemo } = await import('../demo/demo.js');
    return runDemo();
  }
  const file = values.config ?? null;
  if (command === 'run' && cluster.isWorker) {
    const { config, states } = await configFromPrimary();
    return runProxy(config, null, states);
  }
  if (command === 'convert') return convert(positionals[1], values.userlist);
  let config;
  try {
    config = loadConfig({ file, env: process.env });
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`pg-ingress: ${err.message}`);
      return 2;
    }
    throw err;
  }
  if (command === 'check') {
    for (const notice of config.notices) console.error(`pg-ingress: warning: ${notice}`);
    console.log(`configuration OK: ${Object.keys(config.databases).length} database entries, listening on ${config.listen_addr}:${config.listen_port}`);
    if (values.live) return (await checkLive(config, { user: values.user ?? null, write: (line) => console.log(line) })) ? 0 : 1;
    return 0;
  }
  if (command !== 'run') {
    console.error(USAGE);
    return 2;
  }
  const workers = config.workers === 0 ? defaultWorkerCount() : config.workers;
  if (workers > 1 && cluster.isPrimary) {
    cluster.setupPrimary({ execArgv: workerExecArgv(process.execArgv, process.env.NODE_OPTIONS) });
    const log = createLogger(config.log_level, undefined, logFormat(config.log_format));
    for (const notice of config.notices) log.warn(notice);
    return runPrimary({ count: Math.min(workers, MAX_WORKER_ID), config, loadConfig: () => loadConfig({ file, env: process.env }), log });
  }
  return runProxy(config, () => loadConfig({ file, env: process.env }));
}

/** Runs the proxy in this process until a shutdown; `reload` is null in a worker (the primary reads the configuration). */
async function runProxy(config: Config, reload: (() => Config) | null, states?: DatabaseStates): Promise<number> {
  const log = createLogger(config.log_level, undefined, logFormat(config.log_format)).child(cluster.isWorker ? { worker: currentWorkerId() } : {});
  installSafetyNet(log);
  // Said once, by the process that read the configuration (a worker's comes from the primary).
  if (reload) for (const notice of config.notices) log.warn(notice);
  if (config.auth_password === null) log.warn({ auth_user: config.auth_user }, 'no auth_password configured: auth_query will only work if the server trusts auth_user');
  // Loaded here, not at the top: a primary never runs the proxy and stays small without it.
  const { startProxy } = await import('../proxy.js');
  const shutdowns = new ShutdownRequests();
  // Before the start: SIGHUP's default would kill a process still starting. A control signal during the start is ignored.
  let operator: Operator | null = null;
  const signals = listenForSignals(shutdowns, reload ? (control) => void operator?.run(control).then((o) => log.info({ ...o }, `${control.kind} done`)) : null, log);
  const proxy = await startProxy(config, log, {
    hooks: {
      ...(reload ? { loadConfig: reload } : {}),
      shutdown: (mode) => shutdowns.request(mode, false),
    },
    states,
  });
  operator = proxy.context.operator;
  const mode = await shutdowns.first();
  // shutdown_timeout as it is now: a reload may have changed it.
  const timeoutMs = proxy.context.config.shutdown_timeout * 1000;
  log.info({ mode, shutdown_timeout: timeoutMs / 1000 }, mode === 'wait_for_clients' ? 'shutting down: letting clients finish' : mode === 'wait_for_servers' ? 'shutting down: letting transactions finish' : 'shutting down');
  await Promise.race([proxy.shutdown(mode, timeoutMs), shutdowns.immediate()]);
  await proxy.close();
  signals.stop();
  return 0;
}

/** `convert`: the YAML on stdout, or what stops the file from running on stderr. */
function convert(file: string | undefined, userlist: string | undefined): number {
  if (file === undefined) {
    console.error(USAGE);
    return 2;
  }
  try {
    process.stdout.write(convertIni(file, { userlist }));
    return 0;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`pg-ingress: ${err.message}`);
    return 2;
  }
}
