// Every fenced block of README.md is accounted for, so the README cannot drift:
// each command in it is run here against the test cluster (with only the
// substitutions in SUBSTITUTE), or linked to the test that runs it (that file
// must hold the evidence verbatim), or skipped for a stated reason. A new block,
// a new command in a block, or a listed block that is gone fails the inventory.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config/index.js';
import { createCa } from '../../src/tls/certificates.js';
import { BIN, listeningCount } from '../harness/cli.js';
import { until } from '../harness/poll.js';
import { adminSql, freePort, USERS } from '../harness/postgres.js';
import { startTestProxy, testEnv } from '../harness/proxy.js';
import { one, render } from '../unit/deploy/manifests.js';

interface Block {
  lang: string;
  /** The block's text, its list indentation removed. */
  text: string;
  /** 1-based line of the opening fence. */
  line: number;
}

function fencedBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^( *)```(\S*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const indent = open[1]!.length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^ *```\s*$/.test(lines[j]!); j++) body.push(lines[j]!.slice(indent));
    if (j === lines.length) throw new Error(`README.md:${i + 1}: a fence that is never closed`);
    blocks.push({ lang: open[2]!, text: body.join('\n'), line: i + 1 });
    i = j;
  }
  return blocks;
}

const COMMAND_LANGS = new Set(['', 'sh', 'bash', 'shell', 'console', 'zsh', 'psql', 'sql', 'pgsql']);

/** A shell block's commands: `\`-continued lines joined, comments and blank lines dropped. */
function commandsOf(block: Block): string[] {
  if (!COMMAND_LANGS.has(block.lang)) return [];
  return block.text
    .replace(/\\\n\s*/g, '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

const README = readFileSync('README.md', 'utf8');
const BLOCKS = fencedBlocks(README);
const firstLine = (b: Block): string => b.text.split('\n')[0]!.trim();

/** The README block whose first line this is. */
function block(first: string): Block {
  const found = BLOCKS.filter((b) => firstLine(b) === first);
  if (found.length !== 1) throw new Error(`README.md has ${found.length} blocks starting with ${first}`);
  return found[0]!;
}

/** The one command of `first`'s block that starts with `prefix`. */
function command(first: string, prefix: string): string {
  const found = commandsOf(block(first)).filter((c) => c.startsWith(prefix));
  if (found.length !== 1) throw new Error(`the block "${first}" has ${found.length} commands starting with ${prefix}`);
  return found[0]!;
}

/** An inline `code` span of the README's prose that starts with `prefix`. */
function inline(prefix: string): string {
  const found = [...README.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!).filter((c) => c.startsWith(prefix));
  if (found.length !== 1) throw new Error(`README.md has ${found.length} inline commands starting with ${prefix}`);
  return found[0]!;
}

// What this file changes in a README command before it runs it, all in one place: only where
// the machine differs (host, port, password, the repository's own bin instead of its npx name).
const SUBSTITUTE = {
  /** `npx pg-ingress` runs the package's bin, which is this file (asserted below). */
  npx: (cmd: string) => cmd.replaceAll('npx pg-ingress', `node ${BIN}`),
  /** psql as the superuser reaches the test cluster's Unix socket, where `postgres` is trusted. */
  superuserPsql: (cmd: string) => cmd.replace('psql -U postgres', `psql -X -q -v ON_ERROR_STOP=1 -h ${testEnv().cluster.socketDir} -p ${testEnv().cluster.port} -U postgres`),
  /** The proxy's port instead of the documented 6432 (or the LoadBalancer's 5432). */
  port: (cmd: string, from: number, to: number) => cmd.replace(`port=${from} `, `port=${to} `),
  /** The README's own advice until DNS points db.example.com at the proxy: hostaddr added. */
  hostaddr: (cmd: string) => cmd.replace('host=db.example.com ', 'host=db.example.com hostaddr=127.0.0.1 '),
  /** `…` stands for the auth password. */
  authPassword: (cmd: string) => cmd.replace('PG_INGRESS_AUTH_PASSWORD=…', `PG_INGRESS_AUTH_PASSWORD=${USERS.auth.password}`),
  /** The shipped config with quick start step 2's entry above its "*", and the test cluster's port for 5432 in both. */
  shippedConfig: (dir: string, entry: string): string => {
    const file = join(dir, 'pg-ingress.yaml');
    const shipped = readFileSync('config/pg-ingress.yaml', 'utf8');
    const star = '  "*": host=127.0.0.1 port=5432\n';
    expect(shipped).toContain(star);
    const port = (line: string) => line.replace('port=5432', `port=${testEnv().cluster.port}`);
    writeFileSync(file, shipped.replace(star, `  ${port(entry)}\n${port(star)}`));
    return file;
  },
  /** The environment a started proxy gets besides the README's: its port, and what a shared test machine needs. */
  proxyEnv: (port: number) => ({ PG_INGRESS_LISTEN_PORT: String(port), PG_INGRESS_METRICS_PORT: 'off', PG_INGRESS_WORKERS: '1' }),
};

/** The application user of the README's examples, in a database `app` of the test cluster. */
const APP = { name: 'app', password: 'app-readme-pw' };

type Coverage = { run: string } | { linked: string; evidence: string[] } | { skipped: string };

interface Entry {
  /** The block's first line, as in the README. */
  block: string;
  /** How each command is covered, by the exact command; `*` for every command not named (or a sample's whole text). */
  commands: Record<string, Coverage>;
  /** What this file runs of the block. */
  check?: () => Promise<void> | void;
}

const NEEDS_KUBERNETES = 'needs a Kubernetes cluster with CloudNativePG and cert-manager; the objects it names are checked in the rendered manifests here';

const ENTRIES: Entry[] = [
  {
    block: 'npm ci && npm run demo   # installs, compiles (dist/), and shows it working',
    commands: {
      'npm ci && npm run demo   # installs, compiles (dist/), and shows it working': { linked: 'test/integration/demo.test.ts', evidence: ["scripts.demo).toBe('node bin/pg-ingress.js demo')", "spawn(process.execPath, [BIN, 'demo']"] },
      'npm test                 # the test suite (boots its own throwaway PostgreSQL)': { linked: '.ci/run', evidence: ['npm ci --no-audit --no-fund', '\nnpm test\n'] },
    },
  },
  {
    block: 'psql "host=localhost port=6432 dbname=app user=app sslmode=require"',
    commands: { '*': { run: 'after the quick start steps 1-4 (init-sql | psql, check --live, npm start), on the shipped config' } },
    check: quickStart,
  },
  {
    block: 'databases:',
    commands: { '*': { run: 'loads as the databases of a configuration' } },
    check: () => {
      const config = loadConfig({ file: null, env: {}, overrides: parse(block('databases:').text) as Record<string, unknown> });
      expect(Object.keys(config.databases).sort()).toEqual(['*', 'app', 'reports']);
    },
  },
  {
    block: 'postInitApplicationSQL:',
    commands: { '*': { linked: 'test/unit/cli/init-sql.test.ts', evidence: ["shows --cnpg's shape as the command prints it", 'expect(readme).toContain(roles)'] } },
  },
  {
    block: 'configuration OK: 3 database entries, listening on 0.0.0.0:6432',
    commands: { '*': { skipped: 'output of check --live against a cluster named db-rw, not a command; each kind of line is asserted by test/integration/check-live.test.ts' } },
  },
  {
    block: 'kubectl exec -it -n databases "$(kubectl get cluster app -n databases -o jsonpath=\'{.status.currentPrimary}\')" -- psql app',
    commands: { '*': { skipped: NEEDS_KUBERNETES } },
    check: () => {
      expect(one(render('cloudnative-pg'), 'Cluster', 'app').metadata.namespace).toBe('databases');
    },
  },
  {
    block: 'PGPASSWORD="$(kubectl get secret -n databases app-superuser -o jsonpath=\'{.data.password}\' | base64 -d)"',
    commands: { '*': { skipped: `${NEEDS_KUBERNETES} (app-superuser and app-rw are what CloudNativePG names for the Cluster app)` } },
    check: () => {
      expect(one(render('cloudnative-pg'), 'Cluster', 'app').metadata.namespace).toBe('databases');
    },
  },
  {
    block: 'docker build -t pg-ingress .',
    commands: {
      '*': { linked: 'test/docker/compose.test.ts', evidence: ["runs the README's docker run block", '/^(docker build -t pg-ingress \\.)\\n(docker run '] },
    },
  },
  {
    block: 'docker compose up --build -d --wait',
    commands: {
      'docker compose up --build -d --wait': { linked: 'test/docker/compose.test.ts', evidence: ["compose('build', 'pg-ingress')", "compose('up', '-d', '--wait')"] },
      'PGPASSWORD=app psql "host=localhost port=6432 dbname=app user=app sslmode=require"': { linked: 'test/docker/compose.test.ts', evidence: ['PGPASSWORD=(\\S+) psql "host=localhost port=6432 (dbname=app user=app sslmode=require)"', "lets the README's psql line in"] },
      'curl localhost:9127/metrics': { linked: 'test/docker/compose.test.ts', evidence: ['fetch(`http://localhost:${metricsPort}/metrics`)'] },
      'docker compose down': { linked: 'test/docker/compose.test.ts', evidence: ["compose('down')"] },
    },
  },
  {
    block: 'PGBOUNCER_PASSWORD="$(openssl rand -base64 32)"',
    commands: {
      'PGBOUNCER_PASSWORD="$(openssl rand -base64 32)"': { run: 'makes a 32-byte base64 password' },
      '*': { skipped: NEEDS_KUBERNETES },
    },
    check: async () => {
      const ran = await sh(`${command('PGBOUNCER_PASSWORD="$(openssl rand -base64 32)"', 'PGBOUNCER_PASSWORD=')}; printf %s "$PGBOUNCER_PASSWORD"`);
      expect(ran.code).toBe(0);
      expect(Buffer.from(ran.stdout, 'base64')).toHaveLength(32);
      // The Secret it creates in both namespaces is the one the Cluster's managed role and the Deployment read.
      const text = block('PGBOUNCER_PASSWORD="$(openssl rand -base64 32)"').text;
      expect(text).toContain('for ns in databases pg-ingress; do');
      expect(text).toContain('kubectl create secret generic pg-user-pgbouncer -n "$ns" --type=kubernetes.io/basic-auth');
      const cluster = one(render('cloudnative-pg'), 'Cluster', 'app') as unknown as { spec: { managed: { roles: Array<{ name: string; passwordSecret: { name: string } }> } } };
      expect(cluster.spec.managed.roles.find((r) => r.name === 'pgbouncer')?.passwordSecret.name).toBe('pg-user-pgbouncer');
      const deployment = one(render('overlays/example'), 'Deployment', 'pg-ingress');
      expect(deployment.metadata.namespace).toBe('pg-ingress');
      expect(JSON.stringify(deployment)).toContain('"secretName":"pg-user-pgbouncer"');
    },
  },
  {
    block: 'kubectl apply -k deploy/kubernetes/cloudnative-pg',
    commands: { '*': { skipped: `${NEEDS_KUBERNETES}; test/unit/deploy validates the whole rendering` } },
    check: () => {
      expect(one(render('cloudnative-pg'), 'Cluster', 'app').metadata.namespace).toBe('databases');
    },
  },
  {
    block: 'kubectl apply -k deploy/kubernetes/overlays/example',
    commands: { '*': { skipped: `${NEEDS_KUBERNETES}; test/unit/deploy validates the whole rendering` } },
    check: () => {
      expect(one(render('overlays/example'), 'Deployment', 'pg-ingress').metadata.namespace).toBe('pg-ingress');
    },
  },
  {
    block: "kubectl get secret pg-ingress-tls -n pg-ingress -o jsonpath='{.data.ca\\.crt}' | base64 -d > pg-ingress-ca.crt",
    commands: {
      'psql "host=db.example.com port=5432 dbname=app user=app sslmode=verify-full sslrootcert=pg-ingress-ca.crt"': { run: 'verify-full against a certificate for db.example.com, through hostaddr' },
      '*': { skipped: `${NEEDS_KUBERNETES} (app-app is CloudNativePG's Secret for the Cluster app's owner)` },
    },
    check: loadBalancerPsql,
  },
];

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `sh -c command` in `cwd` with `input` on stdin (psql without -c reads its SQL there). */
function sh(cmd: string, opts: { input?: string; env?: Record<string, string>; cwd?: string } = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', cmd], {
      cwd: opts.cwd ?? process.cwd(),
      env: { PATH: process.env.PATH, HOME: process.env.HOME, PSQLRC: '/dev/null', PGCONNECT_TIMEOUT: '10', ...opts.env },
      timeout: 30_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

const started: ChildProcess[] = [];
afterAll(async () => {
  for (const child of started) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGQUIT');
    await exited;
  }
});

async function ensureAppDatabase(): Promise<void> {
  const { cluster } = testEnv();
  await adminSql(cluster, `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${APP.name}') THEN CREATE ROLE ${APP.name} LOGIN PASSWORD '${APP.password}'; END IF; END $$`);
  if ((await adminSql(cluster, `SELECT count(*) FROM pg_database WHERE datname = '${APP.name}'`)) === '0') await adminSql(cluster, `CREATE DATABASE ${APP.name} OWNER ${APP.name}`);
}

/** The quick start's "real PostgreSQL" steps as the README words them, then its psql block. */
async function quickStart(): Promise<void> {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { bin: Record<string, string>; scripts: Record<string, string> };
  expect(pkg.bin['pg-ingress']).toBe('bin/pg-ingress.js'); // what SUBSTITUTE.npx runs instead
  await ensureAppDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'pg-ingress-readme-'));
  // 2. The DSN map entry the step names, added to the shipped config.
  const config = SUBSTITUTE.shippedConfig(dir, inline('app: host=127.0.0.1 port=5432 dbname=app'));

  // 1. The auth setup, applied as a superuser in the database users connect to.
  const initSql = await sh(SUBSTITUTE.superuserPsql(SUBSTITUTE.npx(inline('npx pg-ingress init-sql | psql -U postgres -d app'))));
  expect(initSql.stderr).toBe('');
  expect(initSql.code).toBe(0);

  // 3. check --live on that config, the password from the environment.
  const check = await sh(SUBSTITUTE.authPassword(SUBSTITUTE.npx(inline('PG_INGRESS_AUTH_PASSWORD=… npx pg-ingress check --config config/pg-ingress.yaml --live --user app'))).replace('config/pg-ingress.yaml', config));
  expect(check.stdout).toMatch(/^ok {3}"app": .*auth_query finds "app" with a SCRAM-SHA-256 verifier$/m);
  expect(check.stdout).not.toContain('FAIL');
  expect(check.code).toBe(0);

  // 4. `npm start` (the script's command, on the config with the cluster's port), then the psql block.
  expect(inline('PG_INGRESS_AUTH_PASSWORD=… npm start')).toBe('PG_INGRESS_AUTH_PASSWORD=… npm start');
  const start = pkg.scripts.start!;
  expect(start).toBe('node --max-semi-space-size=4 bin/pg-ingress.js --config config/pg-ingress.yaml');
  const port = await freePort();
  const [node, ...args] = start.replace('bin/pg-ingress.js', BIN).replace('config/pg-ingress.yaml', config).split(' ');
  const proxy = spawn(node === 'node' ? process.execPath : node!, args, {
    env: { PATH: process.env.PATH, PG_INGRESS_AUTH_PASSWORD: USERS.auth.password, ...SUBSTITUTE.proxyEnv(port) },
  });
  started.push(proxy);
  let out = '';
  proxy.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proxy.stderr.on('data', (d: Buffer) => (out += d.toString()));
  await until('npm start listening', () => {
    if (proxy.exitCode !== null) throw new Error(`pg-ingress exited ${proxy.exitCode}: ${out}`);
    return listeningCount(out) >= 1;
  }, { timeoutMs: 20_000, intervalMs: 50 });

  const line = SUBSTITUTE.port(block('psql "host=localhost port=6432 dbname=app user=app sslmode=require"').text, 6432, port);
  const ran = await sh(line, { input: "SELECT 'readme:' || current_user || '@' || current_database();\n", env: { PGPASSWORD: APP.password } });
  expect(ran.stderr).toBe('');
  expect(ran.stdout).toContain('readme:app@app');
  expect(ran.code).toBe(0);
  expect(out).not.toContain(USERS.auth.password);
}

/** Step 4 of the Kubernetes walk-through: verify-full to db.example.com, the CA in pg-ingress-ca.crt. */
async function loadBalancerPsql(): Promise<void> {
  await ensureAppDatabase();
  const { cluster } = testEnv();
  const ca = await createCa('pg-ingress readme CA');
  const leaf = await ca.issue(['db.example.com']);
  const dir = mkdtempSync(join(tmpdir(), 'pg-ingress-readme-lb-'));
  writeFileSync(join(dir, 'tls.crt'), leaf.cert);
  writeFileSync(join(dir, 'tls.key'), leaf.key, { mode: 0o600 });
  writeFileSync(join(dir, 'pg-ingress-ca.crt'), ca.cert); // what the block's first line writes
  const proxy = await startTestProxy({
    client_tls_cert_file: join(dir, 'tls.crt'),
    client_tls_key_file: join(dir, 'tls.key'),
    databases: { app: `host=${cluster.host} port=${cluster.port} dbname=app` },
  });
  try {
    const first = "kubectl get secret pg-ingress-tls -n pg-ingress -o jsonpath='{.data.ca\\.crt}' | base64 -d > pg-ingress-ca.crt";
    const line = SUBSTITUTE.hostaddr(SUBSTITUTE.port(command(first, 'psql '), 5432, proxy.port));
    expect(line).toContain('hostaddr=127.0.0.1');
    // The block's `export PGPASSWORD=…` (from the Secret app-app) becomes the environment.
    const ran = await sh(line, { cwd: dir, input: "SELECT 'verified:' || current_user;\n", env: { PGPASSWORD: APP.password } });
    expect(ran.stderr).toBe('');
    expect(ran.stdout).toContain('verified:app');
    expect(ran.code).toBe(0);
    // The certificate is checked for real: another name fails.
    const wrongName = await sh(line.replace('host=db.example.com', 'host=other.example.com'), { cwd: dir, env: { PGPASSWORD: APP.password } });
    expect(wrongName.code).not.toBe(0);
    expect(wrongName.stderr).toMatch(/does not match host name|certificate/);
    // The Certificate's Secret is the one the first line reads.
    expect((one(render('overlays/example'), 'Certificate', 'pg-ingress') as unknown as { spec: { secretName: string } }).spec.secretName).toBe('pg-ingress-tls');
  } finally {
    await proxy.close();
  }
}

describe('README.md inline commands', () => {
  it("the admin console's psql line answers SHOW POOLS for an admin_users member", async () => {
    const { cluster } = testEnv();
    await adminSql(cluster, `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ops') THEN CREATE ROLE ops LOGIN PASSWORD 'ops-readme-pw'; END IF; END $$`);
    const proxy = await startTestProxy({ admin_users: ['ops'] });
    try {
      const line = inline('psql "host=… dbname=pgbouncer user=ops sslmode=require"');
      const ran = await sh(line.replace('host=… ', `host=localhost port=${proxy.port} `), { env: { PGPASSWORD: 'ops-readme-pw' } });
      expect(ran.stderr).toBe('');
      expect(ran.stdout).toMatch(/^ *database *\| *user *\| *cl_active/m);
      expect(ran.code).toBe(0);
    } finally {
      await proxy.close();
    }
  });
});

describe('README.md command blocks', () => {
  it('every fenced block is listed, every command in it covered, and every listed block still exists', () => {
    const listed = new Set(ENTRIES.map((e) => e.block));
    const unlisted = BLOCKS.filter((b) => !listed.has(firstLine(b))).map((b) => `README.md:${b.line} (${b.lang || 'plain'}): ${firstLine(b)}`);
    expect(unlisted, 'blocks that are neither run, linked nor skipped here').toEqual([]);
    for (const entry of ENTRIES) {
      const b = block(entry.block); // throws for a listed block that is gone
      const commands = commandsOf(b);
      const named = Object.keys(entry.commands).filter((k) => k !== '*');
      expect(named.filter((c) => !commands.includes(c)), `README.md:${b.line}: listed commands no longer in the block`).toEqual([]);
      if (!('*' in entry.commands)) expect(commands.filter((c) => !named.includes(c)), `README.md:${b.line}: commands with no coverage`).toEqual([]);
      if (Object.values(entry.commands).some((c) => 'run' in c)) expect(entry.check, `README.md:${b.line} says run but has no check`).toBeDefined();
    }
  });

  it('each linked test holds its evidence verbatim', () => {
    for (const entry of ENTRIES) {
      for (const coverage of Object.values(entry.commands)) {
        if (!('linked' in coverage)) continue;
        const text = readFileSync(coverage.linked, 'utf8');
        for (const evidence of coverage.evidence) expect(text, `${coverage.linked} for "${entry.block}"`).toContain(evidence);
      }
    }
  });

  for (const entry of ENTRIES) {
    // The title must not throw for a block that is gone: the inventory above says so.
    const line = BLOCKS.find((b) => firstLine(b) === entry.block)?.line ?? 'gone';
    if (entry.check) it(`runs README.md:${line}: ${entry.block}`, { timeout: 60_000 }, entry.check);
  }
});
