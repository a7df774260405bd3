// Fake servers, a fake connector and limits for Pool's unit tests (pool.test.ts,
// pool-controls.test.ts): the fields Pool reads of a ServerConnection, no network.
import { EventEmitter } from 'node:events';
import { createLogger } from '../../../src/log/logger.js';
import { Pool, type PoolLimits, type PoolSettings } from '../../../src/pool/pool.js';
import type { ServerCredentials } from '../../../src/pool/server-login.js';
import { ServerStatements } from '../../../src/pool/server-statements.js';
import type { ServerAddress, ServerConnection, ServerOwner } from '../../../src/pool/server.js';
import type { PgError } from '../../../src/protocol/pg-error.js';

export const log = createLogger('silent');
export const CREDENTIALS: ServerCredentials = { kind: 'none' };

/** The fields Pool reads of a ServerConnection, and a switch for what its own queries do. */
export class FakeServer {
  static nextId = 1;
  readonly id = FakeServer.nextId++;
  readonly createdAt = Date.now();
  lastUsedAt = Date.now();
  used = false;
  expiresAt = Infinity;
  closed = false;
  /** Whether the client left it idle (isClean also needs it open). */
  clean = true;
  cancelsInFlight = 0;
  // What a login reported: the pool caches it as its welcome.
  readonly initialParams = new Map([['application_name', ''], ['is_superuser', 'off']]);
  readonly superuserMember: boolean | null = null;
  readonly processId = 4242;
  readonly secretKey = 77;
  readonly statements = new ServerStatements(10);
  readonly stream = new EventEmitter();
  readonly ran: string[] = [];
  owner: ServerOwner | null = null;
  /** The next runInternal's outcome: resolve, reject, or stay pending until `finishInternal`. */
  internal: 'ok' | 'fail' | 'hold' = 'ok';
  private held: { resolve: () => void; reject: (e: Error) => void } | null = null;

  constructor(readonly address: ServerAddress) {}

  get isClean(): boolean {
    return !this.closed && this.clean;
  }

  get reusable(): boolean {
    return this.isClean && this.statements.trusted; // as ServerConnection's
  }

  runInternal(sql: string): Promise<void> {
    this.ran.push(sql);
    if (this.internal === 'fail') return Promise.reject(new Error(`${sql} failed`));
    if (this.internal === 'hold') return new Promise((resolve, reject) => (this.held = { resolve, reject }));
    return Promise.resolve();
  }

  finishInternal(ok: boolean): void {
    const held = this.held!;
    this.held = null;
    if (ok) held.resolve();
    else held.reject(new Error('failed'));
  }

  attach(owner: ServerOwner | null): void {
    this.owner = owner;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    queueMicrotask(() => this.stream.emit('close')); // a socket's close comes later, as in life
  }
}

/** Opens fake servers: at once (`auto`), or one by one as the test says. */
export class FakeConnector {
  auto = true;
  readonly opened: FakeServer[] = [];
  readonly pending: { address: ServerAddress; resolve: (s: ServerConnection) => void; reject: (e: Error) => void }[] = [];
  calls = 0;

  readonly connect = (address: ServerAddress): Promise<ServerConnection> => {
    this.calls++;
    return new Promise((resolve, reject) => {
      this.pending.push({ address, resolve, reject });
      if (this.auto) this.succeed();
    });
  };

  succeed(): FakeServer {
    const p = this.pending.shift()!;
    const server = new FakeServer(p.address);
    this.opened.push(server);
    p.resolve(server as unknown as ServerConnection);
    return server;
  }

  fail(err: Error): void {
    this.pending.shift()!.reject(err);
  }
}

export const ADDRESS: ServerAddress = { host: '127.0.0.1', port: 5432, dbname: 'app', user: 'alice' };

export function settings(connector: FakeConnector, overrides: Partial<PoolSettings> = {}): PoolSettings {
  return {
    mode: 'transaction',
    size: 1,
    minSize: 0,
    reserveSize: 0,
    reserveTimeoutMs: 5000,
    connectTimeoutMs: 1000,
    loginRetryMs: 0,
    waitTimeoutMs: 0,
    lifetimeMs: 0,
    idleTimeoutMs: 0,
    checkQuery: '',
    checkDelayMs: 30_000,
    resetQuery: '',
    maxPrepared: 10,
    unusedTimeoutMs: 0,
    connect: connector.connect,
    ...overrides,
  };
}

/** A budget with room for anything: each ask is granted at once. */
export const noLimits: PoolLimits = {
  request: (pool, kind, count) => pool.granted(kind, count),
  withdraw: () => undefined,
  released: () => undefined,
  shouldYield: () => false,
};

export function makePool(connector: FakeConnector, overrides: Partial<PoolSettings> = {}, address = ADDRESS): Pool {
  const pool = new Pool(address.dbname, address, settings(connector, overrides), noLimits, log);
  pool.setCredentials(CREDENTIALS);
  return pool;
}

/** Lets promise callbacks (the connector's, runInternal's, close events) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

/** Tracks what acquire() has done so far without awaiting it. */
export function track(p: Promise<ServerConnection>): { server: FakeServer | null; error: PgError | Error | null } {
  const t: { server: FakeServer | null; error: PgError | Error | null } = { server: null, error: null };
  p.then(
    (s) => (t.server = s as unknown as FakeServer),
    (e: Error) => (t.error = e),
  );
  return t;
}

export const asServer = (s: FakeServer): ServerConnection => s as unknown as ServerConnection;
