// The `pg-ingress` command: run the proxy, print the auth_query setup SQL, or
// check a configuration.
import cluster from 'node:cluster';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config/index.js';
import { createLogger, logFormat } from '../log/logger.js';
import { initSql } from './init-sql.js';
import { runPrimary } from '../workers/primary.js';
import { workerExecArgv } from '../workers/node-flags.js';
import { defaultWorkerCount } from '../workers/cpu-budget.js';
import { currentWorkerId, MAX_WORKER_ID } from '../workers/messages.js';
import { installSafetyNet } from '../process/safety-net.js';

const USAGE = `usage:
  pg-ingress [--config FILE]          run the proxy (default config: none, env and defaults only)
  pg-ingress check [--config FILE]    validate the configuration and exit
  pg-ingress init-sql [--auth-user pgbouncer] [--auth-role pgbouncer_auth]
                                      print the SQL that sets up auth_query with least privilege
Environment variables override the file; see docs/configuration.md.`;

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      'auth-user': { type: 'string' },
      'auth-role': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const command = positionals[0] ?? 'run';
  if (command === 'init-sql') {
    process.stdout.write(initSql({ authUser: values['auth-user'] ?? 'pgbouncer', authRole: values['auth-role'] ?? 'pgbouncer_auth' }));
    return 0;
  }
  let config;
  try {
    config = loadConfig({ file: values.config ?? null, env: process.env });
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`pg-ingress: ${err.message}`);
      return 2;
    }
    throw err;
  }
  if (command === 'check') {
    console.log(`configuration OK: ${Object.keys(config.databases).length} database entries, listening on ${config.listen_addr}:${config.listen_port}`);
    return 0;
  }
  if (command !== 'run') {
    console.error(USAGE);
    return 2;
  }
  const workers = config.workers === 0 ? defaultWorkerCount() : config.workers;
  if (workers > 1 && cluster.isPrimary) {
    cluster.setupPrimary({ execArgv: workerExecArgv(process.execArgv, process.env.NODE_OPTIONS) });
    return runPrimary(Math.min(workers, MAX_WORKER_ID), createLogger(config.log_level, undefined, logFormat(config.log_format)));
  }
  const log = createLogger(config.log_level, undefined, logFormat(config.log_format)).child(cluster.isWorker ? { worker: currentWorkerId() } : {});
  installSafetyNet(log);
  if (config.auth_password === null) log.warn({ auth_user: config.auth_user }, 'no auth_password configured: auth_query will only work if the server trusts auth_user');
  // Loaded here, not at the top: a primary never runs the proxy and stays small without it.
  const { startProxy } = await import('../proxy.js');
  const proxy = await startProxy(config, log);
  // SIGTERM drains (clients finish, up to shutdown_timeout); SIGINT, or a second signal, closes at once.
  const signal = await new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  if (signal === 'SIGTERM') {
    log.info({ signal, shutdown_timeout: config.shutdown_timeout }, 'shutting down: letting clients finish');
    const now = new Promise<void>((resolve) => {
      process.once('SIGTERM', () => resolve());
      process.once('SIGINT', () => resolve());
    });
    await Promise.race([proxy.drain(config.shutdown_timeout * 1000), now]);
  } else log.info({ signal }, 'shutting down');
  await proxy.close();
  return 0;
}
