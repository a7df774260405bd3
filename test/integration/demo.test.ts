// `npm run demo` as a newcomer runs it: the printed commands are pasted into a
// shell as they are, and a Ctrl-C (SIGINT to the whole process group, as a
// terminal sends it) leaves no server and no temp dir behind.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN } from '../harness/cli.js';
import { until } from '../harness/poll.js';

interface Shell {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `sh -c command` with `input` on stdin (psql without -c reads its SQL there). */
function shell(command: string, input = ''): Promise<Shell> {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', command], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, PSQLRC: '/dev/null', PGCONNECT_TIMEOUT: '10' },
      timeout: 20_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

/** Command lines of processes whose command line mentions `text` (pgrep -f). */
function processesOf(text: string): Promise<string> {
  return new Promise((resolve) => execFile('pgrep', ['-a', '-f', text], (_err, stdout) => resolve(stdout.trim())));
}

const exited = (child: ChildProcess): Promise<number | null> =>
  child.exitCode !== null || child.signalCode !== null ? Promise.resolve(child.exitCode) : new Promise((resolve) => child.once('exit', (code) => resolve(code)));

describe('npm run demo', () => {
  let demo: ChildProcess | null = null;
  let stdout = '';
  let stderr = '';

  afterAll(async () => {
    // A failed test must not leave the demo's PostgreSQL running.
    if (demo && demo.exitCode === null && demo.signalCode === null) {
      process.kill(-demo.pid!, 'SIGTERM');
      await exited(demo);
    }
  });

  it('prints commands that work as pasted, and Ctrl-C removes everything', { timeout: 120_000 }, async () => {
    // What `npm run demo` runs, without npm: on a Ctrl-C npm itself dies of the signal, hiding the demo's exit code.
    expect(JSON.parse(readFileSync('package.json', 'utf8')).scripts.demo).toBe('node bin/pg-ingress.js demo');
    // Its own process group: the SIGINT below reaches it (and anything it started in the group) as a terminal's Ctrl-C does.
    demo = spawn(process.execPath, [BIN, 'demo'], { cwd: process.cwd(), detached: true, env: { ...process.env } });
    demo.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    demo.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await until(
      'the demo block',
      () => {
        if (demo!.exitCode !== null) throw new Error(`the demo exited (${demo!.exitCode}):\n${stdout}\n${stderr}`);
        return stdout.includes('Ctrl-C stops it all.');
      },
      { timeoutMs: 90_000, intervalMs: 100 },
    );
    const lines = stdout.split('\n').map((l) => l.trim());
    const connect = lines.find((l) => l.startsWith('PGPASSWORD=') && l.includes('dbname=demo '));
    const console_ = lines.find((l) => l.startsWith('PGPASSWORD=') && l.includes('dbname=pgbouncer '));
    const metricsUrl = /Metrics: (http:\/\/\S+)/.exec(stdout)?.[1];
    const caFile = /sslrootcert=(\S+?)"/.exec(connect ?? '')?.[1];
    expect(connect).toContain('sslmode=verify-full');
    expect(console_).toBeDefined();
    expect(metricsUrl).toBeDefined();
    expect(caFile).toBeDefined();
    const dir = dirname(caFile!);
    const password = /^PGPASSWORD=(\S+) /.exec(connect!)![1]!;
    expect(stdout).toContain(`password ${password}`);

    const session = await shell(connect!, "SELECT current_user || ' over ' || 'pg-ingress' AS who;\n");
    expect(session.stderr).toBe('');
    expect(session.stdout).toContain('demo over pg-ingress');
    expect(session.stdout).toContain('(1 row)');

    const pools = await shell(console_!);
    expect(pools.stderr).toBe('');
    expect(pools.stdout).toMatch(/^ demo +\| demo +\|/m); // SHOW POOLS: the demo session's pool

    const metrics = await fetch(metricsUrl!);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/^pgbouncer_up 1$/m);

    expect(existsSync(dir)).toBe(true);
    expect(await processesOf(dir)).toMatch(/postgres/); // the check below can fail
    expect(stderr).not.toContain(password); // printed for the person, never logged

    process.kill(-demo.pid!, 'SIGINT');
    expect(await exited(demo)).toBe(0);
    expect(existsSync(dir)).toBe(false);
    expect(await processesOf(dir)).toBe('');
    expect(stderr).toContain('stopped');
  });

  it('without PostgreSQL server programs, says how to install them and exits non-zero', async () => {
    const child = spawn(process.execPath, [BIN, 'demo'], { env: { PATH: '/nonexistent', PG_INGRESS_DEMO_PG_BIN_DIRS: '/nonexistent' } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    expect(await exited(child)).toBe(1);
    expect(out).toBe('');
    expect(err).toContain('no PostgreSQL server programs found');
    for (const install of ['apt-get install postgresql', 'dnf install postgresql-server', 'brew install postgresql@17', 'docker compose up --build']) expect(err).toContain(install);
  });
});
