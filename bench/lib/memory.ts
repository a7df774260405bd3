// Idle memory: RSS a proxy needs per idle, authenticated TLS client. A fresh
// proxy is warmed up with one login, its RSS sampled, N clients connected by a
// child process (its own fd limit raised by sh), RSS sampled again.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { USERS } from '../../test/harness/postgres.js';
import { onCleanup } from './cleanup.js';
import { RAISE_FD_LIMIT, sleep } from './daemon.js';
import { treeRssBytes } from './proc.js';
import { checkLogin, DB, fdWarning, type ProxyProcess, type World } from './setup.js';

export interface IdleResult {
  clients: number;
  connected: number;
  failed: number;
  rssBefore: number;
  rssAfter: number;
  bytesPerClient: number | null;
  error: string | null;
  warning: string | null;
}

function medianRss(pid: number, samples: number, gapMs: number): Promise<number> {
  return (async () => {
    const v: number[] = [];
    for (let i = 0; i < samples; i++) {
      v.push(treeRssBytes(pid));
      if (i + 1 < samples) await sleep(gapMs);
    }
    v.sort((a, b) => a - b);
    return v[Math.floor(v.length / 2)]!;
  })();
}

export async function measureIdle(world: World, proxy: ProxyProcess, clients: number, opts: { settleMs: number; samples: number }): Promise<IdleResult> {
  const warning = fdWarning(proxy, clients);
  const login = await checkLogin(world, proxy.port, DB.tx, true); // warm-up: TLS context, auth_query, one server
  if (login !== null) return { clients, connected: 0, failed: clients, rssBefore: 0, rssAfter: 0, bytesPerClient: null, error: `warm-up login failed: ${login}`, warning };
  await sleep(opts.settleMs);
  const pid = proxy.daemon.pid;
  const rssBefore = await medianRss(pid, opts.samples, 200);

  const script = join(world.repoRoot, 'bench/dist/bench/idle-clients.js');
  const child = spawn('sh', ['-c', RAISE_FD_LIMIT, 'sh', process.execPath, script], {
    env: {
      PATH: process.env.PATH,
      PGPASSWORD: USERS.scram.password,
      IDLE_CLIENTS: JSON.stringify({ port: proxy.port, database: DB.tx, user: USERS.scram.name, count: clients, batch: 200 }),
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const unregister = onCleanup('idle clients', () => {
    child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s.slice(0, 4096)));
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  const lines = createInterface({ input: child.stdout });
  const ready = await new Promise<{ connected: number; failed: number; firstError: string | null } | null>((resolve) => {
    const timer = setTimeout(() => resolve(null), 600_000);
    lines.on('line', (line) => {
      const msg = JSON.parse(line) as { ready?: boolean; connected: number; failed: number; firstError: string | null };
      if (msg.ready) {
        clearTimeout(timer);
        resolve(msg);
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      resolve(null);
    });
  });
  let result: IdleResult;
  if (ready === null) {
    result = { clients, connected: 0, failed: clients, rssBefore, rssAfter: 0, bytesPerClient: null, error: `idle client process failed: ${stderr.trim().split('\n').slice(-3).join(' ') || 'timeout'}`, warning };
  } else {
    await sleep(opts.settleMs);
    const rssAfter = await medianRss(pid, opts.samples, 400);
    result = {
      clients,
      connected: ready.connected,
      failed: ready.failed,
      rssBefore,
      rssAfter,
      bytesPerClient: ready.connected > 0 ? (rssAfter - rssBefore) / ready.connected : null,
      error: ready.failed > 0 ? `${ready.failed} of ${clients} connections failed: ${ready.firstError}` : null,
      warning,
    };
  }
  child.stdin.end('close\n');
  const timeout = setTimeout(() => child.kill('SIGKILL'), 60_000);
  await exited;
  clearTimeout(timeout);
  unregister();
  return result;
}
