// The image and docker-compose.yml, for real: build, `up`, clients from the host
// through the published port, a scrape, `docker stop` draining, `down`.
// Runs under its own project name; publishes on 6432/9127 when they are free
// (then the README's psql line runs verbatim), else on free ports.
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../harness/poll.js';
import { background, freePort, portIsFree, run, runOk } from './docker.js';

const PROJECT = `pg-ingress-test-${process.pid}`;
const IMAGE = 'pg-ingress:dev';
const GRACE_SECONDS = 40; // docker-compose.yml's stop_grace_period
const README_CONTAINER = `${PROJECT}-readme`;

/** The README's "Docker and compose" psql line, which must work as written. */
const README_PSQL = /^(PGPASSWORD=(\S+) psql "host=localhost port=6432 (dbname=app user=app sslmode=require)")$/m.exec(
  readFileSync('README.md', 'utf8'),
);

let port = 6432;
let metricsPort = 9127;
let composeEnv: Record<string, string> = {};

function compose(...args: string[]) {
  return runOk('docker', ['compose', '-p', PROJECT, '-f', 'docker-compose.yml', ...args], { env: composeEnv });
}

function psql(conninfo: string, sql: string, password: string) {
  return run('psql', ['-X', '-At', conninfo, '-c', sql], { env: { PGPASSWORD: password, PGCONNECT_TIMEOUT: '10' } });
}

const appConninfo = () => `host=localhost port=${port} dbname=app user=app sslmode=require`;

/** SQL as the superuser inside the PostgreSQL container (not through pg-ingress). */
async function serverSql(sql: string): Promise<string> {
  return (await compose('exec', '-T', 'postgres', 'psql', '-X', '-At', '-U', 'postgres', '-d', 'app', '-c', sql)).trim();
}

async function containerId(service: string): Promise<string> {
  return (await compose('ps', '-a', '-q', service)).trim();
}

async function inspect(id: string, format: string): Promise<string> {
  return (await runOk('docker', ['inspect', '-f', format, id])).trim();
}

const timings: Record<string, number> = {};

async function timed<T>(name: string, f: () => Promise<T>): Promise<T> {
  const started = Date.now();
  try {
    return await f();
  } finally {
    timings[name] = (Date.now() - started) / 1000;
  }
}

beforeAll(async () => {
  if (!(await portIsFree(6432)) || !(await portIsFree(9127))) {
    port = await freePort();
    metricsPort = await freePort();
  }
  composeEnv = { PG_INGRESS_HOST_PORT: String(port), PG_INGRESS_METRICS_HOST_PORT: String(metricsPort) };
  await timed('build', () => compose('build', 'pg-ingress'));
  await timed('up --wait', () => compose('up', '-d', '--wait'));
});

afterAll(async () => {
  await run('docker', ['rm', '-f', README_CONTAINER]);
  await run('docker', ['image', 'rm', 'pg-ingress']); // the README's tag only: its layers are pg-ingress:dev's
  await run('docker', ['compose', '-p', PROJECT, '-f', 'docker-compose.yml', 'down', '-v', '--remove-orphans'], { env: composeEnv });
  const size = (await run('docker', ['image', 'ls', '--format', '{{.Size}}', IMAGE])).stdout.trim();
  console.log(`docker test: image ${IMAGE} ${size}; seconds: ${JSON.stringify(timings)}; ports ${port}, ${metricsPort}`);
});

describe('the image', () => {
  it('runs pg-ingress as PID 1, as the user node, with the config at /etc/pg-ingress', async () => {
    const id = await containerId('pg-ingress');
    expect(await inspect(id, '{{.State.Health.Status}}')).toBe('healthy');
    expect((await compose('exec', '-T', 'pg-ingress', 'id', '-un')).trim()).toBe('node');
    const cmdline = (await compose('exec', '-T', 'pg-ingress', 'cat', '/proc/1/cmdline')).split('\0').filter(Boolean);
    expect(cmdline).toEqual(['node', '--max-semi-space-size=4', 'bin/pg-ingress.js', '--config', '/etc/pg-ingress/pg-ingress.yaml']);
    expect(await inspect(id, '{{.Config.StopSignal}} {{.Config.StopTimeout}}')).toBe(`SIGTERM ${GRACE_SECONDS}`);
  });

  it('holds the production dependencies only', async () => {
    const modules = (await runOk('docker', ['run', '--rm', '--entrypoint', 'ls', IMAGE, '/app/node_modules'])).split('\n');
    expect(modules).toContain('pg');
    expect(modules).toContain('prom-client');
    for (const dev of ['typescript', 'vitest', 'vite', 'fast-check', 'madge', 'postgres', '@types']) expect(modules).not.toContain(dev);
  });

  it('answers its CLI: `docker run pg-ingress:dev check` validates the shipped config', async () => {
    const out = await runOk('docker', ['run', '--rm', IMAGE, 'check', '--config', '/etc/pg-ingress/pg-ingress.yaml']);
    expect(out).toContain('configuration OK');
  });
});

describe('the compose stack', () => {
  it("lets the README's psql line in", async () => {
    expect(README_PSQL, 'README has the compose psql line').not.toBeNull();
    const [line, , , conninfoTail] = README_PSQL!;
    // Verbatim when the stack got the default ports; else the same line on the ports it got.
    const command = port === 6432 ? line : line.replace('port=6432', `port=${port}`);
    if (port !== 6432) console.log(`docker test: 6432 or 9127 busy; the README line ran on port ${port}`);
    expect(conninfoTail).toBe('dbname=app user=app sslmode=require');
    const ran = await run('bash', ['-c', command], { input: "SELECT 'through pg-ingress as ' || current_user;\n" });
    expect(ran.stderr).toBe('');
    expect(ran.stdout).toContain('through pg-ingress as app');
    expect(ran.code).toBe(0);
  });

  it("runs the README's docker run block: mounted config, password from a Secret file", async () => {
    const block = /^(docker build -t pg-ingress \.)\n(docker run (?:[^\n]*\\\n)*[^\n]*)$/m.exec(readFileSync('README.md', 'utf8'));
    expect(block, 'README has the docker build and docker run lines').not.toBeNull();
    const [, build, dockerRun] = block!;
    // Debian's Docker 20.10 builds this with the legacy builder (compose used BuildKit): both work.
    await timed('README docker build', () => runOk('bash', ['-c', build!]));
    // In a directory holding the two files it mounts; on the stack's network (for the
    // host "postgres"), under its own name and ports, since the stack holds 6432 and 9127.
    const dir = mkdtempSync(join(tmpdir(), 'pg-ingress-readme-'));
    copyFileSync('config/docker/pg-ingress.yaml', join(dir, 'pg-ingress.yaml'));
    copyFileSync('config/docker/auth-password', join(dir, 'auth-password'));
    const [clientPort, scrapePort] = [await freePort(), await freePort()];
    const command = dockerRun!
      .replace('--name pg-ingress ', `--name ${README_CONTAINER} --network ${PROJECT}_default `)
      .replace('-p 6432:6432 -p 9127:9127', `-p ${clientPort}:6432 -p ${scrapePort}:9127`);
    expect(command).toContain(README_CONTAINER);
    expect(command).toContain(`-p ${clientPort}:6432`);
    await runOk('bash', ['-c', `cd ${JSON.stringify(dir)} && ${command}`]);
    await until('the container healthy', async () => (await inspect(README_CONTAINER, '{{.State.Health.Status}}')) === 'healthy', { timeoutMs: 60_000, intervalMs: 500 });
    const who = await psql(`host=localhost port=${clientPort} dbname=app user=app sslmode=require`, 'SELECT current_user', 'app');
    expect(who).toEqual({ code: 0, stdout: 'app\n', stderr: '' });
    await runOk('docker', ['rm', '-f', README_CONTAINER]);
    rmSync(dir, { recursive: true });
  });

  it('logs the SCRAM application user in over TLS', async () => {
    expect(await serverSql("SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'app'")).toBe('t');
    const ran = await run('psql', ['-X', appConninfo(), '-c', '\\conninfo'], { env: { PGPASSWORD: 'app' } });
    expect(ran.stdout).toMatch(/SSL connection \(protocol: TLSv1\.[23]/);
    const who = await psql(appConninfo(), 'SELECT current_user, current_database()', 'app');
    expect(who).toEqual({ code: 0, stdout: 'app|app\n', stderr: '' });
  });

  it('refuses a wrong password with 28P01', async () => {
    const ran = await psql(appConninfo(), 'SELECT 1', 'not-the-password');
    expect(ran.code).toBe(2);
    expect(ran.stderr).toContain('password authentication failed for user "app"');
    const client = new pg.Client({ host: '127.0.0.1', port, database: 'app', user: 'app', password: 'wrong', ssl: { rejectUnauthorized: false } });
    const err = await client.connect().then(
      () => null,
      (e: unknown) => e as { code?: string },
    );
    await client.end().catch(() => undefined);
    expect(err?.code).toBe('28P01');
  });

  it('answers /healthz and /metrics on the metrics port', async () => {
    const health = await fetch(`http://localhost:${metricsPort}/healthz`);
    expect(health.status).toBe(200);
    const metrics = await (await fetch(`http://localhost:${metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/^pgbouncer_up 1$/m);
    expect(metrics).toMatch(/^pg_ingress_auth_failures_total(\{[^}]*\})? [1-9]/m);
    expect(metrics).not.toContain('pgbouncer-dev-password');
  });

  it('drains on docker stop: the running query finishes, then the container exits 0', async () => {
    const id = await containerId('pg-ingress');
    const query = "SELECT pg_sleep(4), 'finished after SIGTERM'";
    const client = background('psql', ['-X', '-At', appConninfo(), '-c', query], { PGPASSWORD: 'app' });
    await until(
      'the query active in PostgreSQL',
      async () => (await serverSql(`SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND state = 'active' AND query = '${query.replaceAll("'", "''")}'`)) === '1',
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    const started = Date.now();
    const stopped = run('docker', ['stop', id]);
    // Draining: no longer ready, while the query still runs.
    await until(
      '/readyz answering 503',
      async () => (await fetch(`http://localhost:${metricsPort}/readyz`).then((r) => r.status, () => 0)) === 503,
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    const finished = await client;
    expect(finished).toEqual({ code: 0, stdout: '|finished after SIGTERM\n', stderr: '' });
    expect((await stopped).code).toBe(0);
    const seconds = (Date.now() - started) / 1000;
    timings['docker stop'] = seconds;
    expect(seconds).toBeLessThan(GRACE_SECONDS);
    expect(await inspect(id, '{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}')).toBe('exited 0 false');
    const logs = await runOk('docker', ['logs', id]);
    expect(logs).toMatch(/"signal":"SIGTERM","mode":"wait_for_clients"/);
  });

  it("leaves no container, network or volume after the README's plain `down`", async () => {
    // No named or anonymous volume (the postgres image's VOLUME is a tmpfs here).
    for (const service of ['postgres', 'pg-ingress']) {
      expect(await inspect(await containerId(service), '{{range .Mounts}}{{.Type}} {{end}}')).not.toContain('volume');
    }
    await timed('down', () => compose('down'));
    const label = `label=com.docker.compose.project=${PROJECT}`;
    expect((await runOk('docker', ['ps', '-a', '-q', '--filter', label])).trim()).toBe('');
    expect((await runOk('docker', ['network', 'ls', '-q', '--filter', label])).trim()).toBe('');
    expect((await runOk('docker', ['volume', 'ls', '-q', '--filter', label])).trim()).toBe('');
  });
});
