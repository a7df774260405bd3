// Boots one PostgreSQL cluster and one test CA for the whole integration run;
// tests isolate themselves by database, user and proxy port.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { createCa } from '../../src/tls/certificates.js';
import { startCluster, type ClusterInfo } from './postgres.js';

export interface TestEnv {
  cluster: ClusterInfo;
  caFile: string;
  certFile: string;
  keyFile: string;
}

const run = promisify(execFile);

declare module 'vitest' {
  export interface ProvidedContext {
    testEnv: TestEnv;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // The CLI tests run the compiled `pg-ingress` bin: build while Postgres boots.
  const build = run('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: process.cwd() });
  build.catch(() => undefined); // awaited below, after the cluster is up
  const ca = await createCa();
  const leaf = await ca.issue(['localhost', '127.0.0.1']);
  // PostgreSQL serves TLS with a certificate of the same CA (server_tls_* tests); it does not name 127.0.0.2.
  const cluster = await startCluster({ tls: await ca.issue(['localhost', '127.0.0.1']) });
  try {
    await build;
  } catch (err) {
    await cluster.stop(); // a failed build must not leave a cluster running
    throw err;
  }
  const caFile = join(cluster.dir, 'ca.pem');
  const certFile = join(cluster.dir, 'server.pem');
  const keyFile = join(cluster.dir, 'server.key');
  writeFileSync(caFile, ca.cert);
  writeFileSync(certFile, leaf.cert);
  writeFileSync(keyFile, leaf.key, { mode: 0o600 });
  const { stop, ...info } = cluster;
  project.provide('testEnv', { cluster: info, caFile, certFile, keyFile });
  return stop;
}
