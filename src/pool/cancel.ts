// Cancel keys: every client gets a random BackendKeyData from us, never a
// server's. A CancelRequest carrying it is forwarded, on a new connection, to
// the server that client is using right now, with that server's real keys.
// While such a cancel is in flight the server is counted as being canceled
// (`cancelsInFlight`), so that the pool does not hand it to another client
// whose query the late cancel would hit (PgBouncer >= 1.18's sv_being_canceled).
import { randomInt } from 'node:crypto';
import net from 'node:net';
import { serialize } from 'pg-protocol';
import type { ServerConnection } from './server.js';
import { WORKER_SHIFT, workerOfProcessId } from '../workers/worker-id.js';

export interface Cancellable {
  /** The server running this client's query now, if any. */
  currentServer(): ServerConnection | null;
}

interface Entry {
  // A number, not a Buffer: comparing two int32 values leaks nothing worth timing, and a
  // 4-byte Buffer per client would pin a slab of Node's shared allocation pool.
  secretKey: number;
  client: Cancellable;
}

/** How long a cancel connection may take, connect to close, before it is given up. */
const CANCEL_TIMEOUT_MS = 10_000;

/** Cancels of a server whose connection is still being opened (SHOW POOLS cl_waiting_cancel_req). */
const opening = new WeakMap<ServerConnection, number>();
/** What runs once a server has no cancel in flight any more (the pool putting it back). */
const settledHooks = new WeakMap<ServerConnection, () => void>();

/** The cancels in flight for `server`: still connecting, and sent (awaiting the server's close). */
export function cancelsOf(server: ServerConnection): { opening: number; sent: number } {
  const o = opening.get(server) ?? 0;
  return { opening: o, sent: server.cancelsInFlight - o };
}

/** Runs `done` once no cancel is in flight for `server`: at once if none is. The last hook set wins. */
export function whenCancelsSettle(server: ServerConnection, done: () => void): void {
  if (server.cancelsInFlight === 0) done();
  else settledHooks.set(server, done);
}

export class CancelRegistry {
  private readonly byProcessId = new Map<number, Entry>();

  /**
   * @param workerId this worker's id, carried in the top bits of every processId
   * @param toOtherWorker sends a cancel whose key names another worker to it (via the primary)
   */
  constructor(
    private readonly workerId = 0,
    private readonly toOtherWorker: ((processId: number, secretKey: number) => void) | null = null,
  ) {}

  register(client: Cancellable): { processId: number; secretKey: number } {
    let processId: number;
    do processId = (this.workerId << WORKER_SHIFT) | randomInt(1, 1 << WORKER_SHIFT);
    while (this.byProcessId.has(processId));
    const secretKey = randomInt(-0x80000000, 0x7fffffff);
    this.byProcessId.set(processId, { secretKey, client });
    return { processId, secretKey };
  }

  unregister(processId: number): void {
    this.byProcessId.delete(processId);
  }

  /** Forwards a cancel if the keys match a live client with a server; false otherwise (silently, as Postgres). */
  forward(processId: number, secretKey: number): boolean {
    if (workerOfProcessId(processId) !== this.workerId && this.toOtherWorker) {
      this.toOtherWorker(processId, secretKey);
      return true;
    }
    const entry = this.byProcessId.get(processId);
    if (!entry || entry.secretKey !== secretKey) return false;
    const server = entry.client.currentServer();
    if (!server) return false;
    sendCancel(server);
    return true;
  }
}

/**
 * Sends CancelRequest for `server` on a connection of its own, counted in
 * `server.cancelsInFlight` until that connection closes. PostgreSQL closes it
 * after signalling the backend, so from then on the cancel cannot land late.
 */
function sendCancel(server: ServerConnection): void {
  server.cancelsInFlight++;
  opening.set(server, (opening.get(server) ?? 0) + 1);
  let connected = false;
  const { host, port } = server.address;
  const socket = net.connect({ host, port }, () => {
    connected = true;
    opening.set(server, opening.get(server)! - 1);
    socket.end(serialize.cancel(server.processId, server.secretKey));
  });
  socket.on('error', () => undefined); // best effort, as a cancel always is; 'close' follows
  socket.setTimeout(CANCEL_TIMEOUT_MS, () => socket.destroy());
  socket.once('close', () => {
    if (!connected) opening.set(server, opening.get(server)! - 1);
    server.cancelsInFlight--;
    if (server.cancelsInFlight > 0) return;
    const hook = settledHooks.get(server);
    settledHooks.delete(server);
    hook?.();
  });
  socket.resume();
}
