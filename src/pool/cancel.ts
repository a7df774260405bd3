// Cancel keys: every client gets a random BackendKeyData from us, never a
// server's. A CancelRequest carrying it is forwarded, on a new connection, to
// the server that client is using right now, with that server's real keys.
import { randomInt } from 'node:crypto';
import net from 'node:net';
import { serialize } from 'pg-protocol';
import type { ServerConnection } from './server.js';
import { WORKER_SHIFT, workerOfProcessId } from '../workers/messages.js';

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
    const { host, port } = server.address;
    const socket = net.connect({ host, port }, () => socket.end(serialize.cancel(server.processId, server.secretKey)));
    socket.on('error', () => undefined); // best effort, as a cancel always is
    socket.setTimeout(10_000, () => socket.destroy());
    socket.resume();
    return true;
  }
}
