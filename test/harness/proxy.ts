// Starts pg-ingress in process against the test cluster, and runs real
// clients (psql, node-postgres) through it.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { inject } from 'vitest';
import pg from 'pg';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/log/logger.js';
import { startProxy, type RunningProxy } from '../../src/proxy.js';
import { USERS } from './postgres.js';

export function testEnv() {
  return inject('testEnv');
}

/** Proxy config for the test cluster; `overrides` are YAML-level keys. */
export function testConfig(overrides: Record<string, unknown> = {}, env: Record<string, string> = {}) {
  const { cluster, certFile, keyFile } = testEnv();
  const values: Record<string, unknown> = {
      listen_addr: '127.0.0.1',
      listen_port: 0,
      client_tls_cert_file: certFile,
      client_tls_key_file: keyFile,
      auth_password: USERS.auth.password,
      log_level: process.env.PG_INGRESS_TEST_LOG ?? 'silent',
      metrics_port: 'off', // in-process proxies run side by side: a test that wants metrics asks for port 0
      databases: {
        app1: `host=${cluster.host} port=${cluster.port} dbname=app1`,
        app2: { host: cluster.host, port: cluster.port, dbname: 'app2' },
      },
    ...overrides,
  };
  // `databases: undefined` leaves the map to the environment (PGBOUNCER_DSN_*).
  if ('databases' in overrides && overrides.databases === undefined) delete values.databases;
  return loadConfig({ file: null, env, overrides: values });
}

/** Log lines a proxy wrote, parsed. */
export class LogCapture extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    for (const line of chunk.toString('utf8').split('\n')) if (line) this.lines.push(JSON.parse(line) as Record<string, unknown>);
    done();
  }
  get text(): string {
    return this.lines.map((l) => JSON.stringify(l)).join('\n');
  }
}

export async function startTestProxy(overrides: Record<string, unknown> = {}, env: Record<string, string> = {}, logs?: LogCapture): Promise<RunningProxy> {
  const config = testConfig(overrides, env);
  return startProxy(config, createLogger(logs ? 'info' : config.log_level, logs));
}

export interface PsqlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs psql with a connection string; never throws on a non-zero exit. */
export function psql(conninfo: string, sql: string, env: Record<string, string> = {}): Promise<PsqlResult> {
  return new Promise((resolve) => {
    execFile(
      'psql',
      ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', conninfo, '-c', sql],
      { env: { PATH: process.env.PATH, PGCONNECT_TIMEOUT: '10', ...env }, timeout: 20_000 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: stdout.trim(), stderr: stderr.trim() }),
    );
  });
}

/** A libpq connection string to the proxy. */
export function conninfo(port: number, database: string, user: string, extra = 'sslmode=require'): string {
  return `host=localhost port=${port} dbname=${database} user=${user} ${extra}`;
}

/** node-postgres client options for the proxy, TLS verified against the test CA. */
export function pgOptions(port: number, database: string, user: string, password: string, ssl: pg.ClientConfig['ssl'] | 'ca' = 'ca'): pg.ClientConfig {
  const { caFile } = testEnv();
  return {
    host: 'localhost',
    port,
    database,
    user,
    password,
    ssl: ssl === 'ca' ? { ca: readCa(caFile) } : ssl,
    connectionTimeoutMillis: 10_000,
  };
}

function readCa(file: string): string {
  return readFileSync(file, 'utf8');
}

/** Connects, runs `fn`, always ends the client. */
export async function withClient<T>(options: pg.ClientConfig, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(options);
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Connection error fields as node-postgres reports them. */
export async function connectError(options: pg.ClientConfig): Promise<{ code?: string; message: string; severity?: string }> {
  const client = new pg.Client(options);
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    const e = err as { code?: string; message: string; severity?: string };
    return { code: e.code, message: e.message, severity: e.severity };
  } finally {
    await client.end().catch(() => undefined);
  }
  throw new Error('expected the connection to fail, it succeeded');
}

/** The clients a test opens, each ended by endAll() (call it in afterEach): a failing test leaves none behind. */
export class OpenClients {
  private readonly clients: pg.Client[] = [];

  /** Connects a node-postgres client; `onStatus` sees every ParameterStatus of its login and later. */
  async connect(options: pg.ClientConfig, onStatus?: (name: string, value: string) => void): Promise<pg.Client> {
    const c = new pg.Client(options);
    c.on('error', () => undefined);
    if (onStatus) (c as unknown as { connection: pg.Connection }).connection.on('parameterStatus', (m: { parameterName: string; parameterValue: string }) => onStatus(m.parameterName, m.parameterValue));
    this.clients.push(c);
    await c.connect();
    return c;
  }

  async endAll(): Promise<void> {
    for (const c of this.clients.splice(0)) await c.end().catch(() => undefined);
  }
}
