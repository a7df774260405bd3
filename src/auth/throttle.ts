// Auth-failure throttling per (client address, database), as Supavisor does:
// after `limit` failed logins (wrong password or unknown user) within `windowMs`,
// further logins from that address to that database are refused for `blockMs`,
// before any auth_query lookup, so a throttled client costs nothing upstream.
// A success does not reset the count: one valid account must not buy an
// attacker fresh guesses at another. The address map is itself bounded.
import { fatal, type PgError } from '../protocol/pg-error.js';
import { processCounters } from '../stats/process-counters.js';
import type { Logger } from '../log/logger.js';
import { ExpiringLru } from './expiring-lru.js';

/** 08004 sqlserver_rejected_establishment_of_sqlconnection: the server refuses this connection, not the password. */
export const THROTTLED_SQLSTATE = '08004';
/** Addresses (with database) remembered at most; the least recently failing one is forgotten first. */
export const THROTTLE_MAX_ENTRIES = 10_000;

export interface ThrottleSettings {
  /** Failures within the window that start a block; 0 turns throttling off. */
  limit: number;
  windowMs: number;
  blockMs: number;
  maxEntries?: number;
  now?: () => number;
}

interface Failures {
  count: number;
  windowStart: number;
  blockedUntil: number;
}

export class AuthThrottle {
  private readonly entries: ExpiringLru<Failures>;
  private readonly now: () => number;

  constructor(
    private readonly settings: ThrottleSettings,
    private readonly log: Logger | null = null,
  ) {
    this.now = settings.now ?? Date.now;
    this.entries = new ExpiringLru(settings.maxEntries ?? THROTTLE_MAX_ENTRIES, { now: this.now });
  }

  get size(): number {
    return this.entries.size;
  }

  /** Drops expired failure counts (the janitor calls it; at most one sweep a second). */
  sweepExpired(): void {
    this.entries.sweepIfDue();
  }

  /** The error to refuse this login with while its address is blocked, else null. Counts the refusal. */
  refusal(address: string, database: string): PgError | null {
    if (this.settings.limit === 0) return null;
    const f = this.entries.get(key(address, database));
    const now = this.now();
    if (!f || f.blockedUntil <= now) return null;
    processCounters.authThrottled++;
    const seconds = Math.ceil((f.blockedUntil - now) / 1000);
    return fatal(THROTTLED_SQLSTATE, `too many failed login attempts from this address for database "${database}"; wait ${seconds} s before trying again`, {
      detail: `pg-ingress refuses logins from an address after ${this.settings.limit} failed attempts within ${this.settings.windowMs / 1000} s, for ${this.settings.blockMs / 1000} s`,
      hint: 'check the password your client uses, then wait for the block to end',
    });
  }

  /** Notes one failed login (a wrong password or an unknown user). */
  recordFailure(address: string, database: string): void {
    processCounters.authFailures++;
    if (this.settings.limit === 0) return;
    const k = key(address, database);
    const now = this.now();
    let f = this.entries.get(k);
    if (!f || now - f.windowStart >= this.settings.windowMs) f = { count: 0, windowStart: now, blockedUntil: f?.blockedUntil ?? 0 };
    f.count++;
    if (f.count >= this.settings.limit && f.blockedUntil <= now) {
      f.blockedUntil = now + this.settings.blockMs;
      f.count = 0;
      f.windowStart = now;
      this.log?.warn({ client_addr: address, db: database, failures: this.settings.limit, block_s: this.settings.blockMs / 1000 }, 'auth failures: logins from this address to this database are refused for a while');
    }
    // Kept until both the window and any block have passed.
    this.entries.set(k, f, Math.max(f.windowStart + this.settings.windowMs, f.blockedUntil) - now);
  }
}

/** The peer address of a client socket (a TLSSocket has it too), or null when unknown. */
export function clientAddress(socket: object): string {
  const address = (socket as { remoteAddress?: unknown }).remoteAddress;
  // A socket without an address (a Unix socket, a wrapped stream) shares one key: never unthrottled.
  return typeof address === 'string' && address !== '' ? address : 'unknown';
}

const key = (address: string, database: string): string => `${address}\0${database}`;
