// Long-running child processes (PgBouncer, pg-ingress): each in its own process
// group so that stopping it stops everything it started, output to a log file,
// and a readiness wait on its TCP port.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { onCleanup } from './cleanup.js';
import { processTree } from './proc.js';

/** `sh -c` prefix that raises the soft fd limit to the hard one before exec'ing the command. */
export const RAISE_FD_LIMIT = 'ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 20000 2>/dev/null; exec "$@"';

export interface Daemon {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** Set once the process has exited. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | null;
  stop(): Promise<void>;
  logTail(lines?: number): string;
}

export interface DaemonOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /**
   * Signal the descendants before the root: for a wrapper such as runuser, which on
   * SIGTERM waits 2 s before it kills its child, but exits at once when the child does.
   */
  stopChildrenFirst?: boolean;
}

export function startDaemon(name: string, command: string, args: string[], logFile: string, opts: DaemonOptions = {}): Daemon {
  const { env = process.env, cwd, stopChildrenFirst = false } = opts;
  const fd = openSync(logFile, 'a');
  const child: ChildProcess = spawn(command, args, { detached: true, stdio: ['ignore', fd, fd], env, cwd });
  closeSync(fd);
  if (child.pid === undefined) throw new Error(`${name}: could not start ${command}`);
  const pid = child.pid;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const daemon: Daemon = {
    name,
    pid,
    logFile,
    exit: null,
    async stop() {
      unregister();
      if (daemon.exit) return;
      const tree = processTree(pid);
      const t0 = Date.now();
      const wait = (ms: number): Promise<'exited' | 'timeout'> => Promise.race([exited.then(() => 'exited' as const), new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms).unref())]);
      if (stopChildrenFirst && tree.length > 1) {
        for (const p of tree.slice(1)) signal(p, 'SIGTERM');
        if ((await wait(1500)) === 'timeout') signalGroup(pid, 'SIGTERM');
      } else {
        signalGroup(pid, 'SIGTERM');
      }
      if ((await wait(5000)) === 'timeout') {
        signalGroup(pid, 'SIGKILL');
        for (const p of tree) signal(p, 'SIGKILL');
        await exited;
      }
      for (const p of tree.slice(1)) signal(p, 'SIGKILL'); // anything that left the group
      if (Date.now() - t0 > 1000) process.stderr.write(`[bench] note: ${name} took ${((Date.now() - t0) / 1000).toFixed(1)} s to stop after SIGTERM\n`);
    },
    logTail(lines = 20) {
      try {
        return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
      } catch {
        return '';
      }
    },
  };
  child.once('exit', (code, sig) => {
    daemon.exit = { code, signal: sig };
  });
  const unregister = onCleanup(name, () => daemon.stop());
  return daemon;
}

function signalGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    signal(pid, sig);
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port; rejects if `daemon` exits first. */
export async function waitForPort(port: number, daemon: Daemon | null, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (daemon?.exit) throw new Error(`${daemon.name} exited (code ${daemon.exit.code}, signal ${daemon.exit.signal}) before listening:\n${daemon.logTail()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${daemon?.name ?? 'server'} is not listening on 127.0.0.1:${port} after ${timeoutMs} ms:\n${daemon?.logTail() ?? ''}`);
    await sleep(100);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
