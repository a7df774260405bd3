// One pool per (database, user): idle servers, servers in use, and clients
// waiting in FIFO order for one. A server is in exactly one place:
//   connecting      being opened (counted, not yet an object)
//   idle            ready for the next client
//   active          with a client, or running our reset/check query
//   beingCanceled   given back while a cancel for it is in flight: nobody gets
//                   it until that cancel is over, or the cancel could hit the
//                   next client's query (PgBouncer's sv_being_canceled)
// It moves in acquire/release/discard, the cancel's end and the janitor's tick only.
//
// Operators steer a pool from the admin console (control/): pause() holds new
// transactions and closes servers as they come back (PAUSE), reconnect() marks
// every server to be closed when it is next free (RECONNECT, a reload that
// changed the database's address: PgBouncer's close_needed), reconfigure()
// applies reloaded settings.
import type { PoolTerms, SlotKind } from '../budget/ledger.js';
import type { PoolMode } from '../config/index.js';
import type { Logger } from '../log/logger.js';
import { PoolCounters } from '../stats/counters.js';
import { fatal, PgError, SqlState } from '../protocol/pg-error.js';
import { cancelsOf, whenCancelsSettle } from './cancel.js';
import type { ServerCredentials } from './server-login.js';
import { ServerConnection, type ServerAddress, type ServerConnectOptions, type ServerSetup } from './server.js';

/** Opens a TCP connection and logs in (ServerConnection.connect; unit tests give a fake). */
export type ServerConnector = (address: ServerAddress, credentials: ServerCredentials, timeoutMs: number, maxPrepared: number, options?: ServerConnectOptions) => Promise<ServerConnection>;

export interface PoolSettings {
  mode: PoolMode;
  size: number;
  minSize: number;
  reserveSize: number;
  reserveTimeoutMs: number;
  connectTimeoutMs: number;
  loginRetryMs: number;
  waitTimeoutMs: number;
  lifetimeMs: number;
  idleTimeoutMs: number;
  checkQuery: string;
  checkDelayMs: number;
  resetQuery: string;
  /** Cap of renamed prepared statements per server (transaction pooling); 0 when not renaming. */
  maxPrepared: number;
  /** The manager drops a pool unused this long: no client, server or waiter (autodb_idle_timeout); 0 = never. */
  unusedTimeoutMs: number;
  /** How servers are opened; ServerConnection.connect when not given. */
  connect?: ServerConnector;
  /** Ask each new server whether its role can SET ROLE to a superuser (the superuser policy; off with allow_superuser). */
  checkSuperuserMembership?: boolean;
  /** Servers of this pool's database, all pools and workers together (max_db_connections; 0 = none). */
  maxDbConnections?: number;
  /** Servers of this pool's user, all pools and workers together (max_user_connections; 0 = none). */
  maxUserConnections?: number;
  /** TLS, host list, startup parameters and connect_query of new servers (pool/settings.ts). */
  server?: ServerSetup;
}

/** A pool's cached login answer (see Pool.welcome). */
export interface PoolWelcome {
  /** ParameterStatus values at login: the session defaults. */
  readonly params: ReadonlyMap<string, string>;
  readonly superuser: boolean;
  /** A member of a superuser role (SET ROLE makes it one), when that was asked. */
  readonly superuserMember: boolean;
}

/**
 * The budget a pool opens servers from (budget/budget.ts): pool_size, the
 * reserve, max_db_connections and max_user_connections across all pools and
 * workers. A pool asks before it opens a server; the answer comes as
 * granted()/denied(), perhaps before request() returns.
 */
export interface PoolLimits {
  /** `count` slots for waiters waiting since `since` (demand: queued until granted), or for min_pool_size (fill: granted or denied). */
  request(pool: Pool, kind: SlotKind, count: number, since: number): void;
  /** Demand asked for but no longer needed (waiters left, or were served by a freed server). */
  withdraw(pool: Pool, count: number): void;
  /** The pool may hold fewer servers than slots now: the difference goes back. */
  released(pool: Pool): void;
  /** A server that has served a client just became free: close it for a waiter elsewhere? */
  shouldYield(pool: Pool): boolean;
}

/** What SHOW POOLS counts in one pool (clients other than waiting ones are counted by their sessions). */
export interface PoolState {
  waiting: number;
  active: number;
  idle: number;
  used: number;
  tested: number;
  login: number;
  maxWaitMs: number;
  /** Servers given back while a cancel for them is in flight (sv_being_canceled). */
  beingCanceled: number;
  /** Cancels of this pool's servers whose connection is being opened (cl_waiting_cancel_req). */
  cancelsOpening: number;
  /** Cancels sent, their connection not closed yet (cl_active_cancel_req; each holds one sv_active_cancel). */
  cancelsSent: number;
}

interface Waiter {
  resolve: (server: ServerConnection) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | null;
  since: number;
}

export class Pool {
  /** Idle servers, most recently used last (LIFO reuse keeps few servers warm). */
  private readonly idle: ServerConnection[] = [];
  private readonly active = new Set<ServerConnection>();
  private readonly beingCanceled = new Set<ServerConnection>();
  private readonly waiters: Waiter[] = [];
  private connecting = 0;
  /** Slots asked of the budget and not answered yet: for waiters, and for min_pool_size. */
  private askedDemand = 0;
  private askedFill = 0;
  /** Logged-in clients of this pool (the session tells us); a pool with clients is never dropped. */
  private clients = 0;
  /** Last moment the pool was seen in use, for autodb_idle_timeout. */
  private lastInUseAt = Date.now();
  /** closeAll() ran: servers given back are closed, new waiters refused. */
  private closed = false;
  private credentials: ServerCredentials | null = null;
  private retryAt = 0;
  private lastLoginError: Error | null = null;
  /** Servers in `active` running server_reset_query or server_check_query (PgBouncer's sv_tested). */
  private testing = 0;
  /** PAUSE: no server is handed out or opened, and servers coming back are closed. */
  private paused = false;
  /** Servers to close when next free (close_needed); bumping `generation` marks those being opened too. */
  private readonly stale = new Set<ServerConnection>();
  private generation = 0;
  /** Reloaded settings with another pool_mode: applied once the pool's current clients have left (their sessions run in the old mode). */
  private pendingSettings: PoolSettings | null = null;
  /** SHOW STATS counters, bumped by the clients of this pool. */
  readonly stats = new PoolCounters();

  constructor(
    readonly database: string,
    private currentAddress: ServerAddress,
    private settings: PoolSettings,
    private readonly limits: PoolLimits,
    private readonly log: Logger,
  ) {
    this.key = `${database}\0${currentAddress.user}`;
  }

  /** Where new servers connect (a reload may change it; the user never changes). */
  get address(): ServerAddress {
    return this.currentAddress;
  }

  get name(): string {
    return `${this.database}/${this.address.user}`;
  }

  /** Names this pool in the budget, the same in every worker. */
  readonly key: string;

  /** The limits the budget holds this pool to. */
  get terms(): PoolTerms {
    const s = this.settings;
    return { size: s.size, reserveSize: s.reserveSize, reserveTimeoutMs: s.reserveTimeoutMs, minSize: s.minSize, maxDbConnections: s.maxDbConnections ?? 0, maxUserConnections: s.maxUserConnections ?? 0 };
  }

  /** Servers open or being opened. */
  get total(): number {
    return this.idle.length + this.active.size + this.beingCanceled.size + this.connecting;
  }

  /** A client logged in to this pool (called by its session, once). */
  clientJoined(): void {
    this.clients++;
  }

  /** A client of this pool left (called by its session, once, after clientJoined). */
  clientLeft(): void {
    if (this.clients > 0) this.clients--;
    this.lastInUseAt = Date.now();
    if (this.clients === 0 && this.pendingSettings) this.reconfigure(this.pendingSettings, this.currentAddress);
  }

  /**
   * Reloaded settings. A new address closes every server when it is next free.
   * A new pool_mode waits until no client is left: each session runs in the
   * mode it logged in with, and the servers' statement renaming follows the mode.
   */
  reconfigure(settings: PoolSettings, address: ServerAddress): void {
    const before = this.settings;
    const next = { ...settings, connect: settings.connect ?? before.connect }; // how servers are opened is not configuration (tests give a fake)
    if (next.mode !== before.mode && this.clients > 0) {
      if (!this.pendingSettings) this.log.info({ from: before.mode, to: next.mode, clients: this.clients }, 'pool_mode changes once the clients of this pool have left');
      this.pendingSettings = next;
      this.settings = { ...next, mode: before.mode, maxPrepared: before.maxPrepared };
    } else {
      this.pendingSettings = null;
      this.settings = next;
      // Servers rename statements up to a cap fixed at login: new mode or cap, new servers.
      if (next.mode !== before.mode || next.maxPrepared !== before.maxPrepared) this.reconnect();
    }
    if (!sameTarget(address, this.currentAddress)) {
      this.currentAddress = address;
      this.reconnect();
    }
    if (this.settings.lifetimeMs !== before.lifetimeMs) for (const [server] of this.servers(Date.now())) server.expiresAt = this.expiryOf(server);
    // A smaller pool: idle servers above it close now, busy ones when released (reuse()).
    while (this.total > this.maxServers && this.idle.length > 0) this.close(this.idle.shift()!);
    this.pump();
    this.fill();
  }

  /** A reload removed this pool's database: its clients finish, it keeps no server idle, and goes unused. */
  retire(): void {
    this.settings = { ...this.settings, minSize: 0 };
    this.pendingSettings = null;
    this.reconnect();
  }

  /** Servers this pool may hold: pool_size plus the reserve. */
  private get maxServers(): number {
    return this.settings.size + this.settings.reserveSize;
  }

  /** When a server opened at `createdAt` reaches server_lifetime, jittered so that servers opened together are not all closed together. */
  private expiryOf(server: ServerConnection): number {
    return this.settings.lifetimeMs > 0 ? server.createdAt + this.settings.lifetimeMs * (0.85 + 0.15 * Math.random()) : Infinity;
  }

  /** RECONNECT: every server open or being opened now is closed when it is next free; new ones replace them. */
  reconnect(): void {
    this.generation++;
    for (const s of this.active) this.stale.add(s);
    for (const s of this.beingCanceled) this.stale.add(s);
    for (const s of this.idle.splice(0)) this.close(s);
  }

  /** Servers marked by reconnect() that are still open (WAIT_CLOSE waits for none). */
  get closeNeededCount(): number {
    return this.stale.size;
  }

  /** This server will be closed when it is next free (SHOW SERVERS' close_needed). */
  isCloseNeeded(server: ServerConnection): boolean {
    return this.stale.has(server);
  }

  /** PAUSE: hold every new transaction (waiters queue as for a busy pool) and close servers as they come back. */
  pause(): void {
    this.paused = true;
    for (const s of this.idle.splice(0)) this.close(s);
  }

  /** RESUME: hand out servers again. */
  resume(): void {
    this.paused = false;
    this.pump();
    this.fill();
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Has a client, a server (open, opening or held) or a waiter: the manager keeps it. */
  get inUse(): boolean {
    return this.clients > 0 || this.total > 0 || this.waiters.length > 0;
  }

  /** Unused for longer than autodb_idle_timeout: the manager drops it. */
  unusedTooLong(now: number): boolean {
    return this.settings.unusedTimeoutMs > 0 && !this.inUse && now - this.lastInUseAt >= this.settings.unusedTimeoutMs;
  }

  /**
   * What the newest server of this pool said at login: its session defaults and
   * whether its role is (or can become) a superuser. A transaction-mode login
   * completes from it without taking a server (as PgBouncer's welcome message).
   */
  welcome: PoolWelcome | null = null;

  /** Remembers how to log in as this pool's user (from the latest successful client login). */
  setCredentials(credentials: ServerCredentials): void {
    this.credentials = credentials;
    this.fill();
  }

  /** A server for one client: idle first, else a new one if limits allow, else wait in line. */
  acquire(): Promise<ServerConnection> {
    if (this.closed) return Promise.reject(shuttingDown());
    this.lastInUseAt = Date.now();
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, timer: null, since: this.lastInUseAt };
      if (this.settings.waitTimeoutMs > 0) waiter.timer = setTimeout(() => this.expire(waiter), this.settings.waitTimeoutMs);
      this.waiters.push(waiter);
      this.pump();
    });
  }

  /**
   * An idle server right now, without waiting or a promise (the transaction-mode
   * hot path), or null when the caller must acquire(): someone is already
   * waiting (FIFO), nothing is idle, or the server needs its check first.
   */
  takeIdleNow(): ServerConnection | null {
    if (this.waiters.length > 0 || this.paused) return null;
    const server = this.takeIdle();
    if (!server) return null;
    if (this.needsCheck(server)) {
      this.idle.push(server);
      return null;
    }
    this.active.add(server);
    return server;
  }

  /** Gives a server back; a clean one is reset (if asked) and reused, any other is closed. */
  release(server: ServerConnection, reset: boolean): void {
    this.active.delete(server);
    server.attach(null);
    server.lastUsedAt = Date.now();
    server.used = true;
    this.reuse(server, reset);
  }

  /** A server back from a client: closed if it must not be reused, held while a cancel for it is in flight, else reset (if asked) and made idle. */
  private reuse(server: ServerConnection, reset: boolean): void {
    if (this.closed || this.paused || this.stale.has(server) || !server.reusable || server.expiresAt <= Date.now() || this.total >= this.maxServers) {
      this.close(server);
      return;
    }
    if (server.cancelsInFlight > 0) {
      this.beingCanceled.add(server);
      whenCancelsSettle(server, () => {
        // Not there any more: it closed meanwhile (forget), or the pool closed it (closeAll).
        if (this.beingCanceled.delete(server)) this.reuse(server, reset);
      });
      return;
    }
    if (!reset || this.settings.resetQuery === '') {
      this.makeIdle(server);
      return;
    }
    this.active.add(server); // still busy while the reset runs
    this.runOwn(server, this.settings.resetQuery, 'server_reset_query', () => {
      server.statements.clear(); // DISCARD ALL / DEALLOCATE ALL dropped them; re-prepared on demand
      this.active.delete(server);
      this.makeIdle(server);
    });
  }

  /** Drops a server that must not be reused. */
  discard(server: ServerConnection): void {
    this.active.delete(server);
    server.attach(null);
    this.close(server);
  }

  /** Timers, once a second: idle timeout, lifetime, min_pool_size, reserve pool. */
  tick(now: number): void {
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const s = this.idle[i]!;
      const idleTooLong = this.settings.idleTimeoutMs > 0 && now - s.lastUsedAt > this.settings.idleTimeoutMs && this.total > this.settings.minSize;
      if (s.closed || s.expiresAt <= now || idleTooLong) {
        this.idle.splice(i, 1);
        this.close(s);
      }
    }
    this.fill();
    this.pump();
    // Lazily, here only: under contention a worker's waiters come and go with every transaction, and
    // withdrawing the moment none waits would ask and withdraw again per transaction (IPC per query).
    this.withdrawExcess();
  }

  get idleCount(): number {
    return this.idle.length;
  }

  get hasWaiters(): boolean {
    return this.waiters.length > 0;
  }

  get mode(): PoolMode {
    return this.settings.mode;
  }

  get size(): number {
    return this.settings.size;
  }

  /** Server and waiting-client counts as SHOW POOLS reports them; maxwait from the oldest waiter. */
  state(now: number): PoolState {
    let used = 0;
    for (const s of this.idle) if (this.needsCheck(s, now)) used++;
    const oldest = this.waiters[0];
    // A cancel is only ever sent for a server with a client, and such a server is in active or beingCanceled.
    let cancelsOpening = 0;
    let cancelsSent = 0;
    for (const set of [this.active, this.beingCanceled]) {
      for (const s of set) {
        if (s.cancelsInFlight === 0) continue;
        const c = cancelsOf(s);
        cancelsOpening += c.opening;
        cancelsSent += c.sent;
      }
    }
    return {
      waiting: this.waiters.length,
      active: this.active.size - this.testing,
      idle: this.idle.length - used,
      used,
      tested: this.testing,
      login: this.connecting,
      maxWaitMs: oldest ? Math.max(0, now - oldest.since) : 0,
      beingCanceled: this.beingCanceled.size,
      cancelsOpening,
      cancelsSent,
    };
  }

  /** Every open server with its SHOW SERVERS state. */
  *servers(now: number): Generator<[ServerConnection, 'active' | 'idle' | 'used' | 'being_canceled']> {
    for (const s of this.active) yield [s, 'active'];
    for (const s of this.idle) yield [s, this.needsCheck(s, now) ? 'used' : 'idle'];
    for (const s of this.beingCanceled) yield [s, 'being_canceled'];
  }

  /** Closes every server and refuses every waiter, now and later (shutdown, or the manager dropping an unused pool). */
  closeAll(): void {
    this.closed = true;
    for (const s of [...this.idle, ...this.active, ...this.beingCanceled]) s.close();
    this.idle.length = 0;
    this.active.clear();
    this.beingCanceled.clear();
    for (const w of this.waiters.splice(0)) this.settle(w, shuttingDown());
    this.withdrawExcess();
    this.limits.released(this);
  }

  /** Closes the least recently used idle server (if idle since `idleSince` or before), for a waiter the budget has no other room for. */
  evictIdle(idleSince = Infinity): boolean {
    const victim = this.idle[0];
    if (!victim || victim.lastUsedAt > idleSince) return false;
    this.idle.shift();
    victim.close();
    this.limits.released(this);
    return true;
  }

  /** The budget granted `count` slots: each opens a server if a waiter (or min_pool_size) still wants one, else goes back. */
  granted(kind: SlotKind, count: number): void {
    for (let i = 0; i < count; i++) {
      // A grant may cross a withdraw in flight: never below zero.
      if (kind === 'demand' && this.askedDemand > 0) this.askedDemand--;
      else if (kind === 'fill' && this.askedFill > 0) this.askedFill--;
      const wanted = this.waiters.length > this.connecting || this.total < Math.min(this.settings.minSize, this.settings.size);
      if (!this.closed && !this.paused && this.credentials && wanted) this.open();
    }
    this.limits.released(this);
  }

  /** The budget has no room for `count` min_pool_size servers now (the janitor asks again). */
  denied(count: number): void {
    this.askedFill = Math.max(0, this.askedFill - count);
  }

  private makeIdle(server: ServerConnection): void {
    // Closed meanwhile, finished its reset or login after closeAll, or wanted elsewhere. A new server
    // always serves a waiter here first: yielding it unused could pass one slot back and forth forever.
    if (server.closed || this.closed || this.paused || this.stale.has(server) || (server.used && this.limits.shouldYield(this))) {
      this.close(server);
      return;
    }
    this.idle.push(server);
    this.pump();
  }

  private close(server: ServerConnection): void {
    this.stale.delete(server);
    server.close();
    this.limits.released(this);
    this.pump();
  }

  /** Gives back asked-for slots no waiter needs any more (the janitor's tick, and closeAll). */
  private withdrawExcess(): void {
    const excess = this.askedDemand - Math.max(0, this.waiters.length - this.connecting);
    if (excess <= 0) return;
    this.askedDemand -= excess;
    this.limits.withdraw(this, excess);
  }

  private pump(): void {
    if (this.paused) return;
    while (this.waiters.length > 0) {
      const server = this.takeIdle();
      if (!server) break;
      this.active.add(server);
      if (this.needsCheck(server)) this.check(server);
      else this.settle(this.waiters.shift()!, null, server);
    }
    if (this.waiters.length === 0) return;
    if (Date.now() < this.retryAt) {
      // Logins have been failing: fail fast instead of queueing behind server_login_retry.
      if (this.active.size === 0 && this.beingCanceled.size === 0 && this.connecting === 0) {
        const err = fatal(SqlState.connectionFailure, 'server login has been failing, try again later (server_login_retry)', { detail: this.lastLoginError?.message });
        for (const w of this.waiters.splice(0)) this.settle(w, err);
      }
      return;
    }
    this.askForWaiters();
  }

  /** Asks the budget for one server per waiter that no server being opened or asked for will serve, up to this pool's capacity. */
  private askForWaiters(): void {
    const capacity = this.capacity();
    let count = 0;
    while (count < this.waiters.length - this.connecting - this.askedDemand && this.total + this.askedDemand + this.askedFill + count < capacity) count++;
    if (count === 0) return;
    this.askedDemand += count; // before asking: a local budget answers at once
    this.limits.request(this, 'demand', count, this.waiters[0]!.since);
  }

  /** pool_size, plus reserve_pool_size once a client has waited reserve_pool_timeout. */
  private capacity(): number {
    const oldest = this.waiters[0];
    const reserve = this.settings.reserveSize > 0 && oldest !== undefined && Date.now() - oldest.since >= this.settings.reserveTimeoutMs;
    return this.settings.size + (reserve ? this.settings.reserveSize : 0);
  }

  /** Opens servers up to min_pool_size once credentials are known. */
  private fill(): void {
    if (!this.credentials || this.paused || Date.now() < this.retryAt) return;
    const count = Math.min(this.settings.minSize, this.settings.size) - this.total - this.askedDemand - this.askedFill;
    if (count <= 0) return;
    this.askedFill += count;
    this.limits.request(this, 'fill', count, Date.now());
  }

  private takeIdle(): ServerConnection | null {
    for (;;) {
      const server = this.idle.pop();
      if (!server) return null;
      if (server.closed) continue;
      if (server.expiresAt <= Date.now()) {
        this.close(server);
        continue;
      }
      return server;
    }
  }

  private needsCheck(server: ServerConnection, now = Date.now()): boolean {
    // A server fresh from login needs no check (and checking it could loop on a failing check query).
    return this.settings.checkQuery !== '' && server.used && now - server.lastUsedAt >= this.settings.checkDelayMs;
  }

  // server_check_query on a server idle longer than server_check_delay, before a client gets it.
  private check(server: ServerConnection): void {
    this.runOwn(server, this.settings.checkQuery, 'server_check_query', () => {
      server.lastUsedAt = Date.now();
      // PAUSE came while it was checked: no new transaction starts; the waiter stays in line.
      const waiter = this.paused ? undefined : this.waiters.shift();
      if (waiter) this.settle(waiter, null, server);
      else {
        this.active.delete(server);
        this.makeIdle(server);
      }
    });
  }

  /** Runs one of our own queries on a server held in `active`; a server where it fails is closed. */
  private runOwn(server: ServerConnection, sql: string, setting: string, done: () => void): void {
    this.testing++;
    server.runInternal(sql).then(() => {
      this.testing--;
      done();
    }, (err: Error) => {
      this.testing--;
      this.log.warn({ server: server.id, err: err.message }, `${setting} failed; closing the server`);
      this.active.delete(server);
      this.close(server);
    });
  }

  private open(): void {
    const credentials = this.credentials;
    if (!credentials) return;
    this.connecting++;
    const generation = this.generation;
    const connect = this.settings.connect ?? ServerConnection.connect;
    connect(this.currentAddress, credentials, this.settings.connectTimeoutMs, this.settings.maxPrepared, { ...this.settings.server, checkSuperuserMembership: this.settings.checkSuperuserMembership === true }).then(
      (server) => {
        this.connecting--;
        this.retryAt = 0;
        server.expiresAt = this.expiryOf(server);
        // Each new server refreshes it: a changed role or default shows within server_lifetime.
        this.welcome = { params: server.initialParams, superuser: server.initialParams.get('is_superuser') === 'on', superuserMember: server.superuserMember === true };
        server.stream.on('close', () => this.forget(server));
        if (generation !== this.generation) this.stale.add(server); // RECONNECT while it logged in
        this.log.debug({ server: server.id }, 'server connection opened');
        if (server.connectQueryError) this.log.warn({ server: server.id, err: server.connectQueryError }, 'connect_query failed; the server is used anyway, as in PgBouncer');
        this.makeIdle(server);
      },
      (err: Error) => {
        this.connecting--;
        this.limits.released(this);
        this.lastLoginError = err;
        if (this.settings.loginRetryMs > 0) this.retryAt = Date.now() + this.settings.loginRetryMs;
        this.log.warn({ err: err.message }, 'server connection failed');
        // Nobody else can serve them soon: fail every waiter rather than let them hang.
        const doomed = this.active.size === 0 && this.beingCanceled.size === 0 ? this.waiters.splice(0) : this.waiters.splice(0, 1);
        for (const w of doomed) this.settle(w, err);
      },
    );
  }

  private forget(server: ServerConnection): void {
    this.stale.delete(server);
    const i = this.idle.indexOf(server);
    if (i >= 0) this.idle.splice(i, 1);
    const held = this.active.delete(server) || this.beingCanceled.delete(server);
    if (held || i >= 0) this.limits.released(this);
    this.lastInUseAt = Date.now();
  }

  private expire(waiter: Waiter): void {
    const i = this.waiters.indexOf(waiter);
    if (i < 0) return;
    this.waiters.splice(i, 1);
    const seconds = this.settings.waitTimeoutMs / 1000;
    this.settle(
      waiter,
      fatal(SqlState.tooManyConnections, `query_wait_timeout: no server connection became free within ${seconds} s`, {
        detail: this.paused ? `pool "${this.name}" is paused (PAUSE on the admin console)` : `pool "${this.name}" has ${this.settings.size} server connections, all in use`,
        hint: this.paused ? 'RESUME on the admin console, or wait for the operator' : 'raise pool_size / default_pool_size, or use transaction pooling',
      }),
    );
  }

  private settle(waiter: Waiter, err: Error | null, server?: ServerConnection): void {
    if (waiter.timer) clearTimeout(waiter.timer);
    if (err) waiter.reject(err);
    else waiter.resolve(server!);
  }
}

/** Same server to connect to: everything but the user (which names the pool). */
function sameTarget(a: ServerAddress, b: ServerAddress): boolean {
  return JSON.stringify({ ...a, user: '' }) === JSON.stringify({ ...b, user: '' });
}

const shuttingDown = (): PgError => new PgError({ severity: 'FATAL', code: SqlState.adminShutdown, message: 'pg-ingress is shutting down' });
