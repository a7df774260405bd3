// Runs the real `pg-ingress` CLI as a child process against the test cluster:
// a YAML config with the test listener, TLS files and a `*` entry, plus the
// keys a test adds; its stdout and stderr are collected for assertions.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { until } from './poll.js';
import { freePort } from './postgres.js';
import { testEnv } from './proxy.js';

export const BIN = join(process.cwd(), 'bin', 'pg-ingress.js');

export interface CliProxy {
  port: number;
  child: ChildProcess;
  /** The YAML file it runs with (a test may rewrite it, then send SIGHUP). */
  configFile: string;
  /** Everything the process wrote so far. */
  output(): string;
  /** SIGQUIT (close at once; SIGTERM would drain for shutdown_timeout, SIGINT wait for servers), then waits for the exit. */
  stop(): Promise<void>;
}

/**
 * Starts the CLI with the `yaml` lines added to the base config (`yaml` gets the config's
 * directory, for files the config names) and waits (10 s unless `timeoutMs`) until `ready(output)`, else
 * kills it and throws with its output.
 */
export async function startCliProxy(opts: {
  yaml: (dir: string) => string[];
  /** More `databases:` entries, as YAML lines (indented), before the `*` fallback. */
  databases?: string[];
  env?: Record<string, string>;
  ready: (output: string) => boolean;
  /** How long to wait for `ready` (default 10 s; more workers on a loaded machine take longer). */
  timeoutMs?: number;
}): Promise<CliProxy> {
  const { cluster, certFile, keyFile } = testEnv();
  const dir = mkdtempSync(join(tmpdir(), 'pg-ingress-cli-'));
  const port = await freePort();
  const config = join(dir, 'pg-ingress.yaml');
  writeFileSync(
    config,
    [
      'listen_addr: 127.0.0.1',
      `listen_port: ${port}`,
      `client_tls_cert_file: ${certFile}`,
      `client_tls_key_file: ${keyFile}`,
      ...opts.yaml(dir),
      'databases:',
      ...(opts.databases ?? []),
      `  "*": host=${cluster.host} port=${cluster.port}`,
    ].join('\n'),
  );
  const child = spawn(process.execPath, [BIN, '--config', config], { env: { PATH: process.env.PATH, PG_INGRESS_LOG_LEVEL: 'info', ...opts.env } });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  try {
    await until(
      'the CLI ready',
      () => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the CLI exited (${child.exitCode ?? child.signalCode}) before it was ready`);
        return opts.ready(out);
      },
      { timeoutMs: opts.timeoutMs ?? 10_000, intervalMs: 50 },
    );
  } catch (err) {
    child.kill('SIGTERM'); // the primary stops its workers
    throw new Error(`${(err as Error).message}; its output:\n${out}`);
  }
  return {
    port,
    child,
    configFile: config,
    output: () => out,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGQUIT');
      await exited;
    },
  };
}

/** How many workers (or single processes) have logged that they listen. */
export const listeningCount = (output: string): number => (output.match(/pg-ingress listening/g) ?? []).length;
