// PgBouncer's log lines, seen by an operator: log_connections, log_disconnections,
// log_pooler_errors and log_stats with real clients through the proxy; each switch
// read at the moment of the event (a reload replaces context.config); no secret in
// the log; and the real command writing readable text when asked to.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { RunningProxy } from '../../src/proxy.js';
import { BIN, startCliProxy, type CliProxy } from '../harness/cli.js';
import { until } from '../harness/poll.js';
import { USERS } from '../harness/postgres.js';
import { connectError, LogCapture, pgOptions, startTestProxy } from '../harness/proxy.js';

const scram = USERS.scram;
const WRONG = 'not-the-password-42';

let proxy: RunningProxy | null = null;
let cli: CliProxy | null = null;
afterEach(async () => {
  await proxy?.close();
  proxy = null;
  await cli?.stop();
  cli = null;
});

/** Logs in, runs a query, and reports the client's own end of the socket (what the proxy sees as client_addr/port). */
async function loginAndLeave(port: number): Promise<{ addr: string; port: number }> {
  const client = new pg.Client(pgOptions(port, 'app1', scram.name, scram.password));
  client.on('error', () => undefined);
  await client.connect();
  const stream = (client as unknown as { connection: { stream: { localAddress: string; localPort: number } } }).connection.stream;
  const me = { addr: stream.localAddress, port: stream.localPort };
  await client.query('SELECT 1');
  await client.end();
  return me;
}

const messages = (logs: LogCapture): string[] => logs.lines.map((l) => String(l.msg));
const lineOf = (logs: LogCapture, prefix: string, conn?: unknown): Record<string, unknown> | undefined =>
  logs.lines.find((l) => String(l.msg).startsWith(prefix) && (conn === undefined || l.conn === conn));

describe('connection lines', () => {
  it('a login, its disconnect and a wrong password each write their PgBouncer line, naming the connection, address, database and user', async () => {
    const logs = new LogCapture();
    proxy = await startTestProxy({}, {}, logs);
    const me = await loginAndLeave(proxy.port);

    await until('the login line', () => lineOf(logs, 'login: ') !== undefined);
    const login = lineOf(logs, 'login: ')!;
    expect(login).toMatchObject({ level: 30, client_addr: me.addr, client_port: me.port, db: 'app1', user: scram.name });
    expect(login.msg).toMatch(/^login: db=app1 user=app_scram tls=TLSv1\.[23]\/\S+$/);
    await until('the disconnection line', () => lineOf(logs, 'closing because: ', login.conn) !== undefined);
    expect(lineOf(logs, 'closing because: ', login.conn)).toMatchObject({ level: 30, msg: 'closing because: client close request (age=0s)', client_addr: me.addr, db: 'app1', user: scram.name });

    const err = await connectError(pgOptions(proxy.port, 'app1', scram.name, WRONG));
    expect(err.code).toBe('28P01');
    await until('the pooler error line', () => lineOf(logs, 'pooler error: ') !== undefined);
    const refused = lineOf(logs, 'pooler error: ')!;
    expect(refused).toMatchObject({ level: 30, code: '28P01', msg: `pooler error: password authentication failed for user "${scram.name}"`, db: 'app1', user: scram.name });
    expect(lineOf(logs, 'login failed: ', refused.conn)).toMatchObject({ msg: `login failed: db=app1 user=${scram.name}` });
    expect(lineOf(logs, 'closing because: ', refused.conn)?.msg).toBe(`closing because: password authentication failed for user "${scram.name}" (age=0s)`);
    expect(logs.text).not.toContain(WRONG);
    expect(logs.text).not.toContain(scram.password);
  });

  it('each switch silences its own lines, read at the moment of the event (as after a reload)', async () => {
    const logs = new LogCapture();
    proxy = await startTestProxy({}, {}, logs);
    const p = proxy;
    const setConfig = (change: Record<string, boolean>): void => {
      p.context.config = { ...p.context.config, ...change };
    };
    /** A login and a refused login, then until the proxy has seen both close (the lines are written as it does). */
    const events = async (): Promise<string[]> => {
      const before = logs.lines.length;
      await loginAndLeave(p.port);
      await connectError(pgOptions(p.port, 'app1', scram.name, WRONG));
      // A line is written before its socket closes: once the listener holds no connection, all of them are out.
      await until('the listener let both go', async () => (await p.context.stats.collect()).lists.used_clients === 0);
      return messages(logs).slice(before).map((m) => m.split(':')[0]!);
    };
    expect(await events()).toEqual(['login', 'closing because', 'login failed', 'pooler error', 'closing because']);
    setConfig({ log_connections: false });
    expect(await events()).toEqual(['closing because', 'pooler error', 'closing because']);
    setConfig({ log_connections: true, log_disconnections: false });
    expect(await events()).toEqual(['login', 'login failed', 'pooler error']);
    setConfig({ log_disconnections: true, log_pooler_errors: false });
    expect(await events()).toEqual(['login', 'closing because', 'login failed', 'closing because']);
  });
});

describe('log_stats', () => {
  it('writes PgBouncer\'s stats line every stats_period, counting the queries run', async () => {
    const logs = new LogCapture();
    proxy = await startTestProxy({ stats_period: 1 }, {}, logs);
    const client = new pg.Client(pgOptions(proxy.port, 'app1', scram.name, scram.password));
    await client.connect();
    try {
      for (let i = 0; i < 20; i++) await client.query('SELECT 1');
      const counted = (): Record<string, unknown> | undefined => logs.lines.find((l) => String(l.msg).startsWith('stats: ') && ((l.averages as { queries_per_s: number }).queries_per_s ?? 0) > 0);
      await until('a stats line counting queries', () => counted() !== undefined, { timeoutMs: 5000 });
      expect(counted()!.msg).toMatch(/^stats: \d+ xacts\/s, [1-9]\d* queries\/s, in [1-9]\d* B\/s, out [1-9]\d* B\/s, xact \d+ us, query \d+ us, wait \d+ us$/);
      expect(counted()).toMatchObject({ level: 30 });
    } finally {
      await client.end();
    }
  });
});

describe('the command', () => {
  it('log_format text: one readable line per event, with the connection prefix, and no password', async () => {
    cli = await startCliProxy({
      yaml: () => ['log_format: text', 'workers: 1'],
      env: { PG_INGRESS_AUTH_PASSWORD: USERS.auth.password },
      ready: (out) => out.includes('pg-ingress listening'),
    });
    const me = await loginAndLeave(cli.port);
    await connectError(pgOptions(cli.port, 'app1', scram.name, WRONG));
    const c = cli;
    await until('the pooler error line', () => c.output().includes('pooler error: '));
    const out = c.output();
    const host = me.addr.includes(':') ? `\\[${me.addr.replace(/[.[\]]/g, '\\$&')}\\]` : me.addr.replace(/\./g, '\\.');
    expect(out).toMatch(new RegExp(`^\\[[^\\]]+\\] INFO: C-\\d+: app1/app_scram@${host}:${me.port} login: db=app1 user=app_scram tls=TLSv1\\.[23]/\\S+$`, 'm'));
    expect(out).toMatch(new RegExp(`^\\[[^\\]]+\\] INFO: C-\\d+: app1/app_scram@${host}:${me.port} closing because: client close request \\(age=0s\\)$`, 'm'));
    expect(out).toMatch(/^\[[^\]]+\] INFO: C-\d+: app1\/app_scram@\S+ pooler error: password authentication failed for user "app_scram" \{"code":"28P01"\}$/m);
    expect(out).not.toMatch(/^\{/m); // no JSON line
    expect(out).not.toContain(WRONG);
    expect(out).not.toContain(USERS.auth.password);
  });

  it('log_format auto writes readable text in a terminal (as `npm start` there)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pg-ingress-tty-'));
    const config = join(dir, 'pg-ingress.yaml');
    writeFileSync(config, ['listen_addr: 127.0.0.1', 'listen_port: 0', 'client_tls_sslmode: disable', 'metrics_port: off', 'workers: 1'].join('\n'));
    // script(1) gives the command a pseudo-terminal; the shell says which pid to stop.
    const inner = `echo PID=$$; exec ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} --config ${JSON.stringify(config)}`;
    const child = spawn('script', ['-qfec', `sh -c '${inner}'`, '/dev/null'], { env: { PATH: process.env.PATH, PG_INGRESS_LOG_LEVEL: 'info' } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      await until('the listening line', () => out.includes('pg-ingress listening'), { timeoutMs: 10_000 });
      const plain = out.replace(/\x1b\[[0-9;]*m/g, '');
      expect(plain).toMatch(/^\[[^\]]+\] INFO: pg-ingress listening \{"listen_addr":"127\.0\.0\.1",/m);
      expect(plain).not.toMatch(/^\{"level"/m);
    } finally {
      const pid = /PID=(\d+)/.exec(out)?.[1];
      if (pid) process.kill(Number(pid), 'SIGINT');
      else child.kill('SIGKILL');
      await exited;
    }
  });

  it('log_format auto writes JSON when stdout is not a terminal', async () => {
    cli = await startCliProxy({
      yaml: () => ['workers: 1'],
      env: { PG_INGRESS_AUTH_PASSWORD: USERS.auth.password },
      ready: (out) => out.includes('pg-ingress listening'),
    });
    const line = cli.output().split('\n').find((l) => l.includes('pg-ingress listening'))!;
    expect(JSON.parse(line)).toMatchObject({ level: 30, msg: 'pg-ingress listening' });
  });
});
