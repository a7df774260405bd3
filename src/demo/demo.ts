// `pg-ingress demo` (`npm run demo`): a throwaway PostgreSQL with the
// auth_query setup, a demo user, a local CA, and pg-ingress in front of it with
// TLS required and metrics on, so a first look needs no database and no
// configuration. Everything lives in one temp dir that a stop removes.
// Loaded only for this command: nothing here is on the proxy's path.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { pino } from 'pino';
import { initSql } from '../cli/init-sql.js';
import { loadConfig } from '../config/index.js';
import { createLogger, logFormat } from '../log/logger.js';
import type { RunningProxy } from '../proxy.js';
import { createCa } from '../tls/certificates.js';
import { instructions } from './instructions.js';
import { findServerBinaries, NO_SERVER_BINARIES } from './server-binaries.js';
import { startThrowawayCluster, type ThrowawayCluster } from './throwaway-cluster.js';

const DEMO = { database: 'demo', user: 'demo', authUser: 'pgbouncer', authRole: 'pgbouncer_auth' } as const;
const HOST = '127.0.0.1';

/** `preferred` if nothing listens there, else a free port (a pgbouncer or another demo may hold it). */
function portOr(preferred: number): Promise<number> {
  const tryListen = (port: number): Promise<number> =>
    new Promise((resolve, reject) => {
      const server = net.createServer();
      server.once('error', reject);
      server.listen(port, HOST, () => {
        const { port: bound } = server.address() as net.AddressInfo;
        server.close(() => resolve(bound));
      });
    });
  return tryListen(preferred).catch(() => tryListen(0));
}

// base64url: nothing a shell or libpq would need quoted.
const newPassword = (): string => randomBytes(18).toString('base64url');
const literal = (s: string): string => `'${s.replaceAll("'", "''")}'`;

export async function runDemo(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const binDir = findServerBinaries(env);
  if (binDir === null) {
    process.stderr.write(NO_SERVER_BINARIES);
    return 1;
  }
  // From the start: a Ctrl-C while PostgreSQL boots must still end in a cleanup, not a kill.
  let requestStop!: (signal: NodeJS.Signals) => void;
  const stopRequested = new Promise<NodeJS.Signals>((resolve) => (requestStop = resolve));
  const onSignal = (signal: NodeJS.Signals): void => requestStop(signal);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let cluster: ThrowawayCluster | null = null;
  let proxy: RunningProxy | null = null;
  // The crash path (an exception nothing caught, process.exit): stop the server, remove the dir.
  const onExit = (): void => cluster?.stopNow();
  process.on('exit', onExit);
  try {
    console.error(`pg-ingress demo: starting PostgreSQL from ${binDir}`);
    cluster = await startThrowawayCluster(binDir, await portOr(0));
    const authPassword = newPassword();
    const password = newPassword();
    await cluster.sql(`CREATE ROLE ${DEMO.user} LOGIN PASSWORD ${literal(password)}`);
    await cluster.sql(`CREATE DATABASE ${DEMO.database} OWNER ${DEMO.user}`); // alone: not in a transaction block
    await cluster.sql(initSql({ authUser: DEMO.authUser, authRole: DEMO.authRole, database: DEMO.database }), DEMO.database);
    await cluster.sql(`ALTER ROLE ${DEMO.authUser} PASSWORD ${literal(authPassword)}`);

    const ca = await createCa('pg-ingress demo CA');
    const leaf = await ca.issue(['localhost', HOST]);
    const file = (name: string, pem: string): string => {
      const path = join(cluster!.dir, name);
      writeFileSync(path, pem, { mode: 0o600 });
      return path;
    };
    const caFile = file('ca.pem', ca.cert);
    const config = loadConfig({
      file: null,
      env: {}, // the demo is the same everywhere: no PG_INGRESS_* from the shell
      overrides: {
        listen_addr: HOST,
        listen_port: await portOr(6432),
        client_tls_sslmode: 'require',
        client_tls_cert_file: file('server.pem', leaf.cert),
        client_tls_key_file: file('server.key', leaf.key),
        auth_user: DEMO.authUser,
        auth_password: authPassword,
        auth_dbname: DEMO.database,
        databases: { [DEMO.database]: `host=${HOST} port=${cluster.port} dbname=${DEMO.database}` },
        admin_users: [DEMO.user],
        metrics_listen_addr: HOST,
        metrics_port: await portOr(9127),
        log_level: 'info',
      },
    });
    // The log on stderr, so stdout holds only the block below.
    const log = createLogger(config.log_level, pino.destination({ fd: 2, sync: true }), logFormat('auto', process.stderr.isTTY === true));
    const { startProxy } = await import('../proxy.js');
    proxy = await startProxy(config, log);
    process.stdout.write(
      instructions({
        port: proxy.port,
        database: DEMO.database,
        user: DEMO.user,
        password,
        caFile,
        metricsUrl: proxy.metricsPort === null ? null : `http://${HOST}:${proxy.metricsPort}/metrics`,
        serverVersion: cluster.version,
        dir: cluster.dir,
      }),
    );
    const signal = await stopRequested;
    console.error(`pg-ingress demo: ${signal}, stopping pg-ingress and PostgreSQL`);
    await proxy.close();
    await cluster.stop();
    console.error(`pg-ingress demo: stopped, ${cluster.dir} removed`);
    return 0;
  } catch (err) {
    console.error(`pg-ingress demo: ${(err as Error).message}`);
    await proxy?.close().catch(() => undefined);
    cluster?.stopNow();
    return 1;
  } finally {
    process.off('exit', onExit);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
