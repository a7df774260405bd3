// Applies the per-process controls in this process: its pools and its
// clients. With workers every worker applies them (the primary relays), and the
// console answers once all have.
import { route } from '../client/router.js';
import { globalClientId } from '../workers/worker-id.js';
import type { ProxyContext } from '../context.js';
import { fatal, SqlState, type PgError } from '../protocol/pg-error.js';
import type { Control } from './control.js';

/** How often a waiting control (PAUSE, WAIT_CLOSE) looks again; it waits on clients, so this is no test of timing. */
const WAIT_POLL_MS = 20;

export type LocalControl = Extract<Control, { kind: 'pause' | 'resume' | 'reconnect' | 'kill' | 'wait_close' | 'disable' | 'enable' | 'kill_client' }>;

export function isLocalControl(control: Control): control is LocalControl {
  return control.kind !== 'reload' && control.kind !== 'shutdown' && control.kind !== 'set';
}

/** Applies one control here; resolves when it is done (PAUSE: when every server is released). */
export async function applyControl(proxy: ProxyContext, control: LocalControl, worker: number): Promise<void> {
  const { pools } = proxy;
  if ('database' in control && control.database !== null) knownDatabase(proxy, control.database);
  switch (control.kind) {
    case 'pause': {
      pools.pause(control.database);
      // PgBouncer's PAUSE returns once every server is released and closed: the database may restart now.
      // A RESUME meanwhile ends the wait too: nothing is paused any more.
      const stillPaused = (): boolean => (control.database === null ? pools.allPaused : pools.isPaused(control.database));
      return waitUntil(() => !stillPaused() || allOf(proxy, control.database, (pool) => pool.total === 0));
    }
    case 'resume':
      pools.resume(control.database);
      return;
    case 'reconnect':
      for (const pool of pools.of(control.database)) pool.reconnect();
      return;
    case 'wait_close':
      return waitUntil(() => allOf(proxy, control.database, (pool) => pool.closeNeededCount === 0));
    case 'disable':
    case 'enable':
      pools.setDisabled(control.database, control.kind === 'disable');
      return;
    case 'kill':
      // As PgBouncer: the database is paused too, so new clients wait for RESUME instead of reconnecting at once.
      pools.pause(control.database);
      for (const client of [...proxy.clients]) if (control.database === null || client.pool.database === control.database) client.kill(killed());
      for (const pool of pools.of(control.database)) pool.reconnect();
      return;
    case 'kill_client':
      for (const client of proxy.clients) if (globalClientId(worker, client.id) === control.id) client.kill(killed());
      return;
  }
}

/** A database the console names must be one the proxy serves (a typo in a runbook must not answer OK), as in PgBouncer. */
function knownDatabase(proxy: ProxyContext, database: string): void {
  if (route(proxy.config, database) !== null || proxy.pools.of(database).next().done === false) return;
  throw new Error(`no such database: ${database}`);
}

export { globalClientId };

function killed(): PgError {
  return fatal(SqlState.adminShutdown, 'terminating connection due to administrator command', { detail: 'KILL on the pg-ingress admin console' });
}

function allOf(proxy: ProxyContext, database: string | null, test: (pool: { total: number; closeNeededCount: number }) => boolean): boolean {
  for (const pool of proxy.pools.of(database)) if (!test(pool)) return false;
  return true;
}

async function waitUntil(done: () => boolean): Promise<void> {
  while (!done()) await new Promise((resolve) => setTimeout(resolve, WAIT_POLL_MS));
}
