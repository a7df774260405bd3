// Tools for the tests that attack the proxy (fuzz, resources, faults): a seeded
// random source, hostile bytes for each protocol stage, the outcome of one
// hostile connection within deadlines, a guard that notices exceptions reaching
// the process, TCP forwarders that count, refuse or black-hole upstream
// connections, pg_ctl for throwaway clusters, and memory readings.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { ClusterInfo } from './postgres.js';
import { errorFields, int32s, type RawConn } from './raw.js';

const run = promisify(execFile);

// ---- randomness ---------------------------------------------------------------

/** mulberry32: small, fast, and the same sequence for the same seed on every machine. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 1;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** An integer in [min, max]. */
  range(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.chance(0.15) ? 0 : this.int(256);
    return b;
  }
  /** Splits `buf` into 1..maxParts writes at random offsets. */
  split(buf: Buffer, maxParts = 3): Buffer[] {
    const parts = this.range(1, maxParts);
    const cuts = Array.from({ length: parts - 1 }, () => this.int(buf.length + 1)).sort((a, b) => a - b);
    const out: Buffer[] = [];
    let prev = 0;
    for (const c of [...cuts, buf.length]) {
      if (c > prev) out.push(buf.subarray(prev, c));
      prev = Math.max(prev, c);
    }
    return out.length > 0 ? out : [buf];
  }
}

/** The fuzz seed: FUZZ_SEED, else a fixed one so that CI runs are reproducible. */
export function fuzzSeed(): number {
  const s = process.env.FUZZ_SEED;
  return s && /^-?\d+$/.test(s) ? Number(s) >>> 0 : 0x5eed0008;
}

/** Total fuzzing time in ms: FUZZ_SECONDS (default 30). */
export function fuzzBudgetMs(): number {
  const s = Number(process.env.FUZZ_SECONDS ?? '30');
  return (Number.isFinite(s) && s > 0 ? s : 30) * 1000;
}

/** A per-attempt seed derived from the run's seed, the stage and the attempt number. */
export function attemptSeed(seed: number, stage: string, index: number): number {
  let h = seed ^ 0x9e3779b9;
  for (const ch of `${stage}#${index}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  return h >>> 0;
}

// ---- the process ---------------------------------------------------------------

export interface ProcessFault {
  kind: 'uncaughtException' | 'unhandledRejection';
  message: string;
  stack: string;
  at: number;
}

/**
 * Records every exception or rejection that reaches the process. In process, an
 * error escaping from the proxy lands here (a real deployment would have exited).
 */
export class ProcessGuard {
  readonly faults: ProcessFault[] = [];
  private readonly onException = (err: unknown): void => this.record('uncaughtException', err);
  private readonly onRejection = (err: unknown): void => this.record('unhandledRejection', err);

  constructor() {
    process.on('uncaughtException', this.onException);
    process.on('unhandledRejection', this.onRejection);
  }

  /** Faults recorded at or after `since` (Date.now()). */
  since(since: number): ProcessFault[] {
    return this.faults.filter((f) => f.at >= since);
  }

  dispose(): void {
    process.off('uncaughtException', this.onException);
    process.off('unhandledRejection', this.onRejection);
  }

  private record(kind: ProcessFault['kind'], err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err));
    this.faults.push({ kind, message: `${e.constructor.name}: ${e.message}`, stack: e.stack ?? '', at: Date.now() });
  }
}

// ---- time ---------------------------------------------------------------------

/** `p`, or a rejection naming `what` once `ms` have passed. */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/** Polls `check` until it holds or `ms` pass; returns whether it held. */
export async function until(check: () => boolean | Promise<boolean>, ms = 5000, everyMs = 50): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return check();
}

// ---- the outcome of one hostile connection -------------------------------------

export interface Outcome {
  /**
   * error: the proxy sent an ErrorResponse and closed; closed: it closed without one;
   * closed-after-fin: it kept the connection until we half-closed, then closed;
   * hang: still open at the deadline.
   */
  ending: 'error' | 'closed' | 'closed-after-fin' | 'hang';
  sqlstates: string[];
  ms: number;
}

/**
 * Waits for the proxy to end a hostile connection. Without `finAfterMs` it must
 * close within `closeWithinMs` by itself (a login deadline applies); with it,
 * a connection still open after `finAfterMs` is half-closed, and must then close
 * within `closeWithinMs`. The connection is destroyed in any case.
 */
export async function settle(conn: RawConn, opts: { closeWithinMs: number; finAfterMs?: number }): Promise<Outcome> {
  const started = Date.now();
  let fin = false;
  if (opts.finAfterMs !== undefined && !(await conn.waitClosed(opts.finAfterMs))) {
    fin = true;
    conn.endWrite();
  }
  const closed = await conn.waitClosed(opts.closeWithinMs);
  const sqlstates = errorCodes(conn.pending);
  conn.end();
  const ending = !closed ? 'hang' : sqlstates.length > 0 ? 'error' : fin ? 'closed-after-fin' : 'closed';
  return { ending, sqlstates, ms: Date.now() - started };
}

/** SQLSTATEs of the ErrorResponses in what the proxy sent (single-byte S/N answers skipped). */
export function errorCodes(bytes: Buffer): string[] {
  const codes: string[] = [];
  let pos = 0;
  while (pos < bytes.length && (bytes[pos] === 0x53 || bytes[pos] === 0x4e) && (bytes.length - pos < 5 || bytes.readInt32BE(pos + 1) > 0x100000)) pos++;
  while (bytes.length - pos >= 5) {
    const type = bytes[pos]!;
    const len = bytes.readInt32BE(pos + 1);
    if (len < 4 || pos + 1 + len > bytes.length) break;
    if (type === 0x45) codes.push(errorFields(bytes.subarray(pos + 5, pos + 1 + len)).C ?? '?');
    pos += 1 + len;
  }
  return codes;
}

/** Writes each part as its own socket write, one event-loop turn apart, so that they tend to arrive as separate chunks. */
export async function writeParts(conn: RawConn, parts: readonly Buffer[]): Promise<void> {
  for (const p of parts) {
    if (conn.closed) return;
    conn.write(p);
    await new Promise((r) => setImmediate(r));
  }
}

// ---- hostile bytes ---------------------------------------------------------------

export interface HostileInput {
  /** What kind of input this is, for the failure report. */
  label: string;
  writes: Buffer[];
}

const SSL = 80877103;
const GSSENC = 80877104;
const CANCEL = 80877102;
const V3 = 196608;
const BAD_LENGTHS = [0, 1, 3, 4, 7, -1, -8, 0x7fffffff, 0x40000000, 10_001, 65_536, 1_000_000];

export const hex = (parts: readonly Buffer[], max = 160): string => {
  const all = Buffer.concat(parts);
  return all.length > max ? `${all.subarray(0, max).toString('hex')}… (${all.length} bytes)` : all.toString('hex');
};

/** A typed message with a length field that counts its body (or `length` when a lie is wanted). */
export function frame(type: number | string, body: Buffer = Buffer.alloc(0), length = 4 + body.length): Buffer {
  const head = Buffer.alloc(5);
  head[0] = typeof type === 'string' ? type.charCodeAt(0) : type;
  head.writeInt32BE(length | 0, 1);
  return Buffer.concat([head, body]);
}

const cstr = (s: string | Buffer): Buffer => Buffer.concat([typeof s === 'string' ? Buffer.from(s) : s, Buffer.from([0])]);

export function untypedPacket(code: number, body: Buffer = Buffer.alloc(0), length = 8 + body.length): Buffer {
  return Buffer.concat([int32s(length | 0, code | 0), body]);
}

function startupPacket(params: readonly (readonly [string | Buffer, string | Buffer])[], opts: { version?: number; terminator?: boolean } = {}): Buffer {
  const body = Buffer.concat([...params.flatMap(([k, v]) => [cstr(k), cstr(v)]), Buffer.from(opts.terminator === false ? [] : [0])]);
  return untypedPacket(opts.version ?? V3, body);
}

/** Anything as a first packet, in the clear. */
export function firstPacketNoise(rng: Rng): HostileInput {
  const kinds: (() => HostileInput)[] = [
    () => ({ label: 'random bytes', writes: [rng.bytes(rng.range(1, 64))] }),
    () => ({ label: 'bad length', writes: [untypedPacket(rng.pick([SSL, GSSENC, CANCEL, V3, rng.int(0x7fffffff)]), rng.bytes(rng.int(16)), rng.pick(BAD_LENGTHS))] }),
    () => ({ label: 'length that lies a little', writes: rng.split(untypedPacket(rng.pick([SSL, GSSENC, CANCEL, V3]), rng.bytes(rng.int(40)), 8 + rng.range(-8, 40))) }),
    () => ({ label: 'bytes after SSLRequest (CVE-2021-23214)', writes: [Buffer.concat([untypedPacket(SSL), rng.bytes(rng.range(1, 40))])] }),
    () => ({ label: 'GSSENCRequest twice', writes: [untypedPacket(GSSENC), untypedPacket(GSSENC)] }),
    () => ({ label: 'GSSENCRequest then garbage', writes: [untypedPacket(GSSENC), rng.bytes(rng.range(1, 40))] }),
    () => ({ label: 'cancel of the wrong size', writes: [untypedPacket(CANCEL, rng.bytes(rng.pick([0, 4, 7, 9, 12])))] }),
    () => ({ label: 'random protocol version', writes: [startupPacket([['user', 'x']], { version: rng.pick([0, 0x20000, 0x30001, 0x40000, 0xffff0000, rng.int(0x7fffffff)]) })] }),
    () => ({ label: 'direct TLS with garbage', writes: [Buffer.concat([Buffer.from([0x16, 0x03, rng.int(4)]), rng.bytes(rng.range(2, 200))])] }),
    () => ({ label: 'a byte at a time', writes: [...untypedPacket(V3, rng.bytes(rng.int(20)), 8 + rng.int(30))].map((b) => Buffer.from([b])) }),
    () => ({ label: 'header only, never the body', writes: [int32s(rng.range(9, 10_000), V3)] }),
  ];
  return rng.pick(kinds)();
}

/** What follows an SSLRequest answered 'S': anything but a proper TLS handshake. */
export function tlsNoise(rng: Rng, clientHello: Buffer): HostileInput {
  const kinds: (() => HostileInput)[] = [
    () => {
      const b = Buffer.from(clientHello);
      for (let i = rng.range(1, 8); i > 0; i--) b[rng.int(b.length)] = rng.int(256);
      return { label: 'ClientHello with flipped bytes', writes: rng.split(b) };
    },
    () => ({ label: 'truncated ClientHello', writes: [clientHello.subarray(0, rng.range(1, clientHello.length - 1))] }),
    () => ({ label: 'handshake record of random bytes', writes: [Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), int16(rng.range(0, 600)), rng.bytes(rng.range(0, 600))])] }),
    () => ({ label: 'record header claiming 64 kB', writes: [Buffer.from([0x16, 0x03, 0x03, 0xff, 0xff])] }),
    () => ({ label: 'alert and application data records', writes: [Buffer.concat([Buffer.from([rng.pick([0x15, 0x17, 0x14]), 0x03, 0x03]), int16(8), rng.bytes(8)])] }),
    () => ({ label: 'plaintext startup instead of TLS', writes: [startupPacket([['user', 'app_scram'], ['database', 'app1']])] }),
    () => ({ label: 'random bytes', writes: [rng.bytes(rng.range(1, 300))] }),
    () => ({ label: 'ClientHello then garbage', writes: [clientHello, rng.bytes(rng.range(1, 100))] }),
  ];
  return rng.pick(kinds)();
}

const PARAM_NAMES = ['user', 'database', 'options', 'application_name', 'replication', 'client_encoding', 'DateStyle', 'TimeZone', 'search_path', 'extra_float_digits', '_pq_.compression', 'work_mem', '', 'user\u00e9'];

function randomValue(rng: Rng): string | Buffer {
  return rng.pick<() => string | Buffer>([
    () => '',
    () => 'x'.repeat(rng.pick([63, 64, 255, 9000])),
    () => Buffer.from(rng.bytes(rng.int(20)).filter((b) => b !== 0)),
    () => Buffer.from([0xc3, 0x28, 0xff, 0xfe]), // invalid UTF-8
    () => rng.pick(['true', 'database', 'on', '-c work_mem=1GB', 'pgbouncer', 'app1', 'LATIN1', "'; DROP TABLE x; --"]),
  ])();
}

/** A startup packet (sent after TLS) that is wrong in one of many ways. */
export function startupNoise(rng: Rng, user: string): HostileInput {
  const kinds: (() => HostileInput)[] = [
    () => {
      const params = Array.from({ length: rng.range(0, 6) }, () => [rng.pick(PARAM_NAMES), randomValue(rng)] as const);
      if (rng.chance(0.5)) params.unshift(['user', rng.chance(0.5) ? user : randomValue(rng)]);
      return { label: 'random parameters', writes: rng.split(startupPacket(params)) };
    },
    () => ({ label: 'no terminator', writes: [startupPacket([['user', user], ['database', 'app1']], { terminator: false })] }),
    () => ({ label: 'bad length', writes: [untypedPacket(V3, startupPacket([['user', user]]).subarray(8), rng.pick(BAD_LENGTHS))] }),
    () => ({ label: 'value without name end', writes: [untypedPacket(V3, Buffer.from('user\0app'))] }),
    () => ({ label: 'SSLRequest on the encrypted connection', writes: [untypedPacket(SSL)] }),
    () => ({ label: 'cancel on the encrypted connection', writes: [untypedPacket(CANCEL, rng.bytes(8))] }),
    () => ({ label: 'user name of 9 kB', writes: [startupPacket([['user', 'u'.repeat(9000)], ['database', 'app1']])] }),
    () => ({ label: 'database name of 9 kB', writes: [startupPacket([['user', user], ['database', 'd'.repeat(9000)]])] }),
    () => ({ label: 'random bytes', writes: [rng.bytes(rng.range(1, 200))] }),
    () => ({ label: 'replication', writes: [startupPacket([['user', user], ['database', 'app1'], ['replication', rng.pick(['true', 'database', 'yes'])]])] }),
  ];
  return rng.pick(kinds)();
}

function int16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff, 0);
  return b;
}

/** Password-message-stage garbage: after the first authentication request, or after SASLContinue. */
export function saslNoise(rng: Rng, phase: 'initial' | 'final'): HostileInput {
  const saslInitial = (mechanism: string | Buffer, data: Buffer, length = data.length): Buffer => frame('p', Buffer.concat([cstr(mechanism), int32s(length), data]));
  const common: (() => HostileInput)[] = [
    () => ({ label: 'wrong message type', writes: [frame(rng.pick(['Q', 'P', 'S', 'X', 'd', String.fromCharCode(rng.int(256))]), rng.bytes(rng.int(30)))] }),
    () => ({ label: 'oversize password message (header only)', writes: [frame('p', Buffer.alloc(0), rng.pick([1_000_000, 0x7fffffff, 16 * 1024 + 1, 65_536]))] }),
    () => ({ label: 'password message just under the login cap', writes: [frame('p', rng.bytes(16 * 1024 - 10))] }),
    () => ({ label: 'bad length', writes: [frame('p', rng.bytes(rng.int(8)), rng.pick([0, 1, 2, 3, -1]))] }),
    () => ({ label: 'many small password messages', writes: [Buffer.concat(Array.from({ length: rng.range(2, 50) }, () => frame('p', rng.bytes(rng.int(20)))))] }),
    () => ({ label: 'a partial password message', writes: [frame('p', rng.bytes(10), 200).subarray(0, 5 + rng.int(10))] }),
  ];
  const initial: (() => HostileInput)[] = [
    () => ({ label: 'SASLInitialResponse without a mechanism terminator', writes: [frame('p', Buffer.from('SCRAM-SHA-256'))] }),
    () => ({ label: 'SASLInitialResponse whose data length lies', writes: [saslInitial('SCRAM-SHA-256', Buffer.from('n,,n=,r=abc'), rng.pick([-2, 0, 1, 100, 0x7fffffff]))] }),
    () => ({ label: 'unknown mechanism', writes: [saslInitial(rng.pick(['SCRAM-SHA-1', 'PLAIN', '', 'SCRAM-SHA-256-PLUS', Buffer.from([0xff, 0xfe])]), Buffer.from('n,,n=,r=abc'))] }),
    () => ({ label: 'garbage client-first', writes: [saslInitial('SCRAM-SHA-256', Buffer.concat([Buffer.from(rng.pick(['n,,', 'y,,', 'p=tls-server-end-point,,', 'p=x,,', ',,', 'n,a=,', ''])), rng.bytes(rng.int(60))]))] }),
    () => ({ label: 'client-first with a 9 kB nonce', writes: [saslInitial('SCRAM-SHA-256', Buffer.from(`n,,n=,r=${'a'.repeat(9000)}`))] }),
  ];
  const final: (() => HostileInput)[] = [
    () => ({ label: 'garbage client-final', writes: [frame('p', Buffer.concat([Buffer.from(rng.pick(['c=biws,r=', 'c=,r=', 'r=', 'c=biws,p=', 'c=biws,r=raw-test-nonce-0123456789,p=', ''])), rng.bytes(rng.int(80))]))] }),
    () => ({ label: 'client-final with a wrong proof', writes: [frame('p', Buffer.from(`c=biws,r=raw-test-nonce-0123456789,p=${Buffer.alloc(32, 7).toString('base64')}`))] }),
    () => ({ label: 'a second SASLInitialResponse', writes: [saslInitial('SCRAM-SHA-256', Buffer.from('n,,n=,r=again'))] }),
  ];
  return rng.pick([...common, ...(phase === 'initial' ? initial : final)])();
}

/** Extended-protocol and other frontend messages, mostly malformed; never a FunctionCall that could run a real function. */
export function frameNoise(rng: Rng): Buffer {
  const kinds: (() => Buffer)[] = [
    () => Buffer.from('5100000000', 'hex'), // the issue 8 message
    () => frame(rng.pick(['P', 'B', 'D', 'C', 'E', 'H', 'S', 'Q', 'd', 'c', 'f']), Buffer.alloc(0), rng.pick([0, 1, 2, 3])),
    () => frame(rng.pick(['P', 'B', 'D', 'C']), Buffer.alloc(0)), // length 4: an empty body that frames fine
    () => frame('P', rng.chance(0.5) ? rng.bytes(rng.int(40)) : Buffer.concat([cstr(`s${rng.int(5)}`), rng.bytes(rng.int(20))])),
    () => frame('B', rng.chance(0.5) ? rng.bytes(rng.int(40)) : Buffer.concat([cstr(''), cstr(`s${rng.int(5)}`), rng.bytes(rng.int(20))])),
    () => frame(rng.pick(['D', 'C']), Buffer.concat([Buffer.from([rng.pick([0x53, 0x50, rng.int(256)])]), rng.chance(0.5) ? rng.bytes(rng.int(20)) : cstr(`s${rng.int(5)}`)])),
    () => frame('E', rng.bytes(rng.int(12))),
    () => frame(rng.pick(['S', 'H'])),
    () => frame('Q', rng.bytes(rng.int(60))),
    () => frame('F', Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), rng.bytes(rng.int(10))])), // OID 4294967295: no such function
    () => frame(rng.int(256) === 0x46 ? 0x47 : rng.int(256), rng.bytes(rng.int(40))),
    () => frame(rng.pick(['Q', 'P', 'B', 'd']), Buffer.alloc(0), rng.pick([0x7fffffff, 0x40000000, 1 << 20])),
    () => frame(rng.pick(['P', 'B', 'E']), rng.bytes(rng.int(20)), 4 + rng.range(21, 200)), // longer than what follows
  ];
  return rng.pick(kinds)();
}

const QUERY = (sql: string): Buffer => frame('Q', cstr(sql));
export const query = QUERY;
export const SELECT_1 = QUERY('SELECT 1');

/** A batch of 1..5 noisy frames, sometimes after a valid extended-protocol prefix, sometimes ending in Sync. */
export function batchNoise(rng: Rng): Buffer {
  const parts: Buffer[] = [];
  if (rng.chance(0.4)) parts.push(frame('P', Buffer.concat([cstr(''), cstr('SELECT 1'), int16(0)])), frame('B', Buffer.concat([cstr(''), cstr(''), int16(0), int16(0), int16(0)])));
  for (let i = rng.range(1, 5); i > 0; i--) parts.push(frameNoise(rng));
  if (rng.chance(0.5)) parts.push(frame('S'));
  return Buffer.concat(parts);
}

/** What a client might send after CopyInResponse: data, Sync/Flush (which PostgreSQL ignores in COPY), CopyDone, CopyFail, noise. */
export function copyNoise(rng: Rng): HostileInput {
  const kinds: (() => HostileInput)[] = [
    () => ({ label: 'Sync then CopyDone', writes: [Buffer.concat([frame('S'), frame('c')])] }),
    () => ({ label: 'Flush, Sync, CopyDone, Sync', writes: [Buffer.concat([frame('H'), frame('S'), frame('c'), frame('S')])] }),
    () => {
      const parts: Buffer[] = [];
      for (let i = rng.range(1, 8); i > 0; i--) {
        parts.push(rng.pick<() => Buffer>([() => frame('d', rng.bytes(rng.int(100))), () => frame('S'), () => frame('H'), () => frame('c'), () => frame('f', cstr('fuzz')), () => frameNoise(rng)])());
      }
      return { label: 'random COPY frames', writes: rng.split(Buffer.concat(parts)) };
    },
    () => ({ label: 'CopyData with a lying length', writes: [frame('d', rng.bytes(10), rng.pick([0, 2, 0x7fffffff, 1000]))] }),
    () => ({ label: 'a Query in the middle of COPY', writes: [Buffer.concat([frame('d', Buffer.from('x\n')), SELECT_1])] }),
  ];
  return rng.pick(kinds)();
}

const ADMIN_WORDS = ['SHOW', 'POOLS', 'STATS', 'CLIENTS', 'SERVERS', 'CONFIG', 'HELP', 'VERSION', 'LISTS', 'DATABASES', ';', ' ', 'show', '"', "'", '\\', '%s', 'STATS_TOTALS'];

/** Admin console input: SHOW commands and broken ones, extended messages, bad frames. Never a control command. */
export function adminNoise(rng: Rng): HostileInput {
  const kinds: (() => HostileInput)[] = [
    () => ({ label: 'random SHOW-like text', writes: [QUERY(Array.from({ length: rng.range(1, 6) }, () => rng.pick(ADMIN_WORDS)).join(rng.pick([' ', '', ';'])))] }),
    () => ({ label: 'random bytes as a query', writes: [frame('Q', rng.bytes(rng.int(100)))] }),
    () => ({ label: 'a 60 kB query', writes: [QUERY(`SHOW ${'x'.repeat(60_000)}`)] }),
    () => ({ label: 'extended protocol and noise', writes: rng.split(batchNoise(rng)) }),
    () => ({ label: 'Query without a terminator', writes: [frame('Q', Buffer.from('SHOW POOLS'))] }),
    () => ({ label: 'the issue 8 message after a query', writes: [Buffer.concat([QUERY('SHOW VERSION'), Buffer.from('5100000000', 'hex')])] }),
    () => ({ label: 'unknown message types', writes: [frame(rng.pick(['d', 'c', 'f', 'p', 'x', String.fromCharCode(rng.int(256))]), rng.bytes(rng.int(20)))] }),
  ];
  return rng.pick(kinds)();
}

/** A real TLS ClientHello, captured from node's TLS client against a listener that never answers. */
export async function captureClientHello(servername = 'localhost'): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((s) => {
      s.once('data', (d: Buffer) => {
        resolve(Buffer.from(d));
        s.destroy();
        server.close();
      });
    });
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      const c = tls.connect({ port, host: '127.0.0.1', servername, rejectUnauthorized: false });
      c.on('error', () => undefined);
    });
    server.on('error', reject);
  });
}

// ---- upstream in the middle ---------------------------------------------------

/**
 * A TCP forwarder to a real server that counts connections. `pass` relays,
 * `hole` accepts and never answers (nor forwards); `stop()` closes the port so
 * that connections are refused, `listen()` opens it again on the same port.
 */
export class Forwarder {
  mode: 'pass' | 'hole' = 'pass';
  /** Holds each new connection this long before relaying: a slow upstream, so that concurrent work overlaps. */
  delayMs = 0;
  accepted = 0;
  open = 0;
  peak = 0;
  private readonly sockets = new Set<net.Socket>();
  private server: net.Server | null = null;

  private constructor(
    private readonly target: { host: string; port: number },
    public port: number,
  ) {}

  static async start(target: { host: string; port: number }, mode: 'pass' | 'hole' = 'pass', port = 0): Promise<Forwarder> {
    const f = new Forwarder(target, port);
    f.mode = mode;
    await f.listen();
    return f;
  }

  async listen(): Promise<void> {
    const server = net.createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
  }

  /** Refuses new connections from now on (the port is closed); open ones are cut too when `cut`. */
  async stop(cut = true): Promise<void> {
    const server = this.server;
    this.server = null;
    if (cut) this.cutAll();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  cutAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    await this.stop(true);
  }

  private track(s: net.Socket): void {
    this.sockets.add(s);
    s.on('error', () => undefined);
    s.once('close', () => this.sockets.delete(s));
  }

  private accept(client: net.Socket): void {
    this.accepted++;
    this.open++;
    this.peak = Math.max(this.peak, this.open);
    client.once('close', () => this.open--);
    this.track(client);
    if (this.mode === 'hole') {
      client.resume(); // read and drop: a server that accepted and hangs
      return;
    }
    client.pause();
    const relay = (): void => {
      if (client.destroyed) return;
      const upstream = net.connect(this.target.port, this.target.host);
      this.track(upstream);
      client.pipe(upstream);
      upstream.pipe(client);
      client.once('close', () => upstream.destroy());
      upstream.once('close', () => client.destroy());
    };
    if (this.delayMs > 0) setTimeout(relay, this.delayMs);
    else relay();
  }
}

// ---- PostgreSQL control -------------------------------------------------------

/** pg_ctl on a throwaway cluster's data directory (as the postgres OS user when we are root). */
export async function pgCtl(cluster: ClusterInfo, args: string[]): Promise<void> {
  const bin = join(cluster.binDir, 'pg_ctl');
  const all = ['-D', join(cluster.dir, 'data'), '-l', join(cluster.dir, 'postgres.log'), ...args];
  if (process.getuid?.() === 0) await run('runuser', ['-u', 'postgres', '--', bin, ...all], { cwd: '/' });
  else await run(bin, all);
}

// ---- memory -----------------------------------------------------------------

/** Resident set size of a process, from /proc (Linux). */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

let gcFn: (() => void) | null = null;

/** A full garbage collection in this process, without --expose-gc on the command line. */
export function fullGc(): void {
  if (!gcFn) {
    v8.setFlagsFromString('--expose-gc');
    gcFn = vm.runInNewContext('gc') as () => void;
  }
  gcFn();
  gcFn();
}

/** Heap in use plus memory held outside the heap by Buffers, after a full GC. */
export function heapAfterGc(): number {
  fullGc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}
