// Live fuzzing of a running proxy (in process, transaction and session mode):
// hostile bytes at every stage of a connection's life, from the first packet to
// the admin console. After each input: the connection ended with an
// ErrorResponse or a clean close within its deadline, no exception reached the
// process, a bystander opened at the start still answers, and a fresh login works.
//
// About 30 s in all; FUZZ_SECONDS=300 runs longer. Inputs derive from one seed
// (printed on failure; FUZZ_SEED=n replays a run, FUZZ_ONLY="<mode>/<stage>#<n>"
// replays one attempt).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { RunningProxy } from '../../src/proxy.js';
import { adminSql } from '../harness/postgres.js';
import { pgOptions, startTestProxy, testEnv, withClient } from '../harness/proxy.js';
import { rawLogin, RawConn, sslRequest, typesUntilReady } from '../harness/raw.js';
import {
  adminNoise,
  attemptSeed,
  batchNoise,
  captureClientHello,
  copyNoise,
  firstPacketNoise,
  frame,
  fuzzBudgetMs,
  fuzzSeed,
  hex,
  ProcessGuard,
  query,
  Rng,
  saslNoise,
  SELECT_1,
  settle,
  startupNoise,
  tlsNoise,
  until,
  withDeadline,
  writeParts,
  type HostileInput,
  type Outcome,
} from '../harness/hostile.js';

const SEED = fuzzSeed();
const BUDGET_MS = fuzzBudgetMs();
const ONLY = process.env.FUZZ_ONLY ?? null;
const FUZZ = { name: 'fuzz_user', password: 'fuzz-secret-pw' };
const LOGIN_TIMEOUT_S = 1.5;
/** Before login the proxy must end every connection by itself: the login deadline plus scheduling slack. */
const PRE_AUTH = { closeWithinMs: LOGIN_TIMEOUT_S * 1000 + 2000 };
/** After login a connection may wait for more bytes; once we half-close it must close. */
const AFTER_LOGIN = { finAfterMs: 300, closeWithinMs: 3000 };
const MIN_ATTEMPTS = 3;

type Mode = 'transaction' | 'session';

interface Target {
  mode: Mode;
  proxy: RunningProxy;
  /** Opened at the start; must answer after every input. */
  bystander: pg.Client;
  /** Admin console client, for SHOW POOLS. */
  admin: pg.Client;
  /** Holds the only server of the `queue` pool while a hostile client waits for it. */
  holder: pg.Client | null;
  /** Startup packets go over TLS (sslmode require) or in the clear (prefer). */
  startupOverTls: boolean;
}

interface Attempt {
  input: HostileInput;
  outcome: Outcome;
  /** Something the stage itself found wrong (not the checks every attempt gets). */
  problems?: string[];
}

interface StageStats {
  attempts: number;
  endings: Record<string, number>;
  sqlstates: Record<string, number>;
  failures: string[];
}

let guard: ProcessGuard;
let clientHello: Buffer;
const targets = {} as Record<Mode, Target>;
const summary = new Map<string, StageStats>();

const connect = async (port: number, database: string, extra: Partial<pg.ClientConfig> = {}): Promise<pg.Client> => {
  const c = new pg.Client({ ...pgOptions(port, database, FUZZ.name, FUZZ.password), ...extra });
  c.on('error', () => undefined); // a failure shows in the next query
  await c.connect();
  return c;
};

async function startTarget(mode: Mode): Promise<Target> {
  const { cluster } = testEnv();
  const at = `host=${cluster.host} port=${cluster.port}`;
  const proxy = await startTestProxy({
    pool_mode: mode,
    client_tls_sslmode: mode === 'transaction' ? 'require' : 'prefer',
    client_login_timeout: LOGIN_TIMEOUT_S,
    max_client_conn: 2000,
    query_wait_timeout: 10,
    server_login_retry: 0.5,
    auth_failure_limit: 0, // the wrong proofs sent on purpose must not get 127.0.0.1 throttled
    admin_users: [FUZZ.name],
    auth_dbname: 'app1',
    databases: {
      app1: `${at} dbname=app1`,
      app2: `${at} dbname=app2`,
      queue: { host: cluster.host, port: cluster.port, dbname: 'app2', pool_size: 1 },
      repro: `${at} dbname=app2`,
      pin: { host: cluster.host, port: cluster.port, dbname: 'app1', pool_size: 1 },
    },
  });
  return {
    mode,
    proxy,
    bystander: await connect(proxy.port, 'app1', { application_name: 'bystander' }),
    admin: await connect(proxy.port, 'pgbouncer'),
    holder: null,
    startupOverTls: mode === 'transaction',
  };
}

beforeAll(async () => {
  const { cluster } = testEnv();
  await adminSql(
    cluster,
    `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${FUZZ.name}') THEN CREATE ROLE ${FUZZ.name} LOGIN; END IF; END $$; ALTER ROLE ${FUZZ.name} PASSWORD '${FUZZ.password}'`,
  );
  for (const db of ['app1', 'app2']) await adminSql(cluster, 'CREATE TABLE IF NOT EXISTS fuzz_sink (t text); GRANT ALL ON fuzz_sink TO PUBLIC', db);
  guard = new ProcessGuard();
  clientHello = await captureClientHello();
  targets.transaction = await startTarget('transaction');
  targets.session = await startTarget('session');
});

afterAll(async () => {
  printSummary();
  for (const t of Object.values(targets)) {
    for (const c of [t.bystander, t.admin, t.holder]) await c?.end().catch(() => undefined);
    await t.proxy.close();
  }
  guard?.dispose();
});

// ---- the checks after every input -------------------------------------------

/** One bystander query at a time: lanes share the bystander, and node-postgres wants no overlap. */
let bystanderTurn: Promise<unknown> = Promise.resolve();
function askBystander(t: Target): Promise<pg.QueryResult> {
  const turn = bystanderTurn.then(() => withDeadline(t.bystander.query('SELECT 1 AS one'), 3000, 'bystander SELECT 1'));
  bystanderTurn = turn.catch(() => undefined);
  return turn;
}

async function checkAfter(t: Target, since: number): Promise<string[]> {
  const problems: string[] = [];
  for (const f of guard.since(since)) problems.push(`${f.kind} reached the process while this input was in flight: ${f.message}\n${f.stack.split('\n').slice(1, 6).join('\n')}`);
  try {
    const r = await askBystander(t);
    if (r.rows[0].one !== 1) problems.push('bystander got a wrong answer');
  } catch (err) {
    problems.push(`bystander failed: ${(err as Error).message}`);
    await t.bystander.end().catch(() => undefined);
    try {
      t.bystander = await connect(t.proxy.port, 'app1', { application_name: 'bystander' });
    } catch (again) {
      problems.push(`a new bystander could not log in: ${(again as Error).message}`); // tried again after the next input
    }
  }
  try {
    await withDeadline(
      withClient(pgOptions(t.proxy.port, 'app1', FUZZ.name, FUZZ.password), (c) => c.query('SELECT 1')),
      8000,
      'fresh login',
    );
  } catch (err) {
    problems.push(`fresh login failed: ${(err as Error).message}`);
  }
  return problems;
}

// ---- the stages ------------------------------------------------------------

async function preTls(rng: Rng, t: Target): Promise<Attempt> {
  const input = firstPacketNoise(rng);
  const c = await RawConn.connect(t.proxy.port);
  await writeParts(c, input.writes);
  return { input, outcome: await settle(c, PRE_AUTH) };
}

async function duringTls(rng: Rng, t: Target): Promise<Attempt> {
  const input = tlsNoise(rng, clientHello);
  const c = await RawConn.connect(t.proxy.port);
  c.write(sslRequest());
  const answer = await c.byte();
  await writeParts(c, input.writes);
  return { input, outcome: await settle(c, PRE_AUTH), problems: answer === 'S' ? [] : [`SSLRequest answered ${answer}`] };
}

async function inStartup(rng: Rng, t: Target): Promise<Attempt> {
  const input = startupNoise(rng, FUZZ.name);
  const c = await RawConn.connect(t.proxy.port);
  if (t.startupOverTls) {
    c.write(sslRequest());
    if ((await c.byte()) === 'S') await c.startTls();
  }
  await writeParts(c, input.writes);
  return { input, outcome: await settle(c, PRE_AUTH) };
}

const midSasl = (phase: 'initial' | 'final') =>
  async function midSasl(rng: Rng, t: Target): Promise<Attempt> {
    // Unknown users get the mock exchange: it must be as robust as the real one.
    const user = rng.chance(0.3) ? `nobody_${rng.int(1e6)}` : FUZZ.name;
    const c = await rawLogin(t.proxy.port, 'app1', user, FUZZ.password, { until: phase === 'initial' ? 'auth-request' : 'sasl-continue', tls: t.startupOverTls });
    const input = saslNoise(rng, phase);
    await writeParts(c, input.writes);
    return { input, outcome: await settle(c, PRE_AUTH) };
  };

async function loggedIn(t: Target, database = 'app1', params: Record<string, string> = {}): Promise<RawConn> {
  return rawLogin(t.proxy.port, database, FUZZ.name, FUZZ.password, { params, tls: t.startupOverTls });
}

async function inTransaction(rng: Rng, t: Target): Promise<Attempt> {
  const c = await loggedIn(t);
  c.write(query('BEGIN'));
  await typesUntilReady(c);
  const input = { label: 'batch inside a transaction', writes: rng.split(batchNoise(rng)) };
  await writeParts(c, input.writes);
  return { input, outcome: await settle(c, AFTER_LOGIN) };
}

async function midCopy(rng: Rng, t: Target): Promise<Attempt> {
  const c = await loggedIn(t);
  c.write(query('COPY fuzz_sink FROM STDIN'));
  for (let m = await c.message(); m && m.type !== 'G'; m = await c.message()) if (m.type === 'E' || m.type === 'Z') throw new Error(`COPY did not start (${m.type})`);
  const input = copyNoise(rng);
  await writeParts(c, input.writes);
  return { input, outcome: await settle(c, AFTER_LOGIN) };
}

async function midBatch(rng: Rng, t: Target): Promise<Attempt> {
  const c = await loggedIn(t);
  const input = { label: 'extended-protocol batch', writes: rng.split(batchNoise(rng)) };
  await writeParts(c, input.writes);
  return { input, outcome: await settle(c, AFTER_LOGIN) };
}

async function adminConsole(rng: Rng, t: Target): Promise<Attempt> {
  const c = await loggedIn(t, 'pgbouncer');
  const input = adminNoise(rng);
  await writeParts(c, input.writes);
  return { input, outcome: await settle(c, AFTER_LOGIN) };
}

const waitingIn = async (t: Target, database: string): Promise<number> => {
  const rows = (await t.admin.query('SHOW POOLS')).rows as { database: string; user: string; cl_waiting: string }[];
  return Number(rows.find((r) => r.database === database && r.user === FUZZ.name)?.cl_waiting ?? 0);
};

/**
 * A hostile client queued for the `queue` pool's only server, held by another
 * client: either after login (transaction mode: its first Query waits, the rest
 * of the write is held and replayed) or during login (it sends while its login
 * waits for a server). Its application_name differs from the holder's, so the
 * server is re-parameterised before the replay.
 */
async function queued(rng: Rng, t: Target): Promise<Attempt> {
  const duringLogin = t.mode === 'session' || rng.chance(0.3);
  const noise = Buffer.concat([SELECT_1, batchNoise(rng)]);
  const input = { label: duringLogin ? 'sent while the login waits for a server' : 'sent while waiting for a server after login', writes: rng.split(noise, 2) };
  const holderOpts = { application_name: 'holder' };
  let c: RawConn;
  if (duringLogin) {
    t.holder ??= await connect(t.proxy.port, 'queue', holderOpts);
    if (t.mode === 'transaction') await t.holder.query('BEGIN; SELECT 1');
    c = await rawLogin(t.proxy.port, 'queue', FUZZ.name, FUZZ.password, { params: { application_name: `hostile${rng.int(1000)}` }, until: 'auth-ok', tls: t.startupOverTls });
  } else {
    t.holder ??= await connect(t.proxy.port, 'queue', holderOpts);
    c = await rawLogin(t.proxy.port, 'queue', FUZZ.name, FUZZ.password, { params: { application_name: `hostile${rng.int(1000)}` }, tls: t.startupOverTls });
    await t.holder.query('BEGIN; SELECT 1');
  }
  await writeParts(c, input.writes);
  await until(async () => c.closed || (await waitingIn(t, 'queue')) >= 1, 2000);
  // Hand the server over: the held bytes are now delivered.
  const holder = t.holder;
  if (t.mode === 'session') {
    t.holder = null;
    await holder.end();
  } else {
    await withDeadline(holder.query('COMMIT'), 5000, 'holder COMMIT').catch(async (err: Error) => {
      t.holder = null;
      await holder.end().catch(() => undefined);
      throw err;
    });
  }
  return { input, outcome: await settle(c, AFTER_LOGIN) };
}

interface Stage {
  name: string;
  modes: Mode[];
  /** Share of the time budget. */
  share: number;
  lanes: number;
  attack: (rng: Rng, t: Target) => Promise<Attempt>;
}

const STAGES: Stage[] = [
  { name: 'before TLS', modes: ['transaction', 'session'], share: 3, lanes: 6, attack: preTls },
  { name: 'TLS handshake', modes: ['transaction'], share: 2, lanes: 6, attack: duringTls },
  { name: 'startup', modes: ['transaction', 'session'], share: 3, lanes: 6, attack: inStartup },
  { name: 'SASLInitialResponse', modes: ['transaction', 'session'], share: 3, lanes: 6, attack: midSasl('initial') },
  { name: 'SASLResponse', modes: ['transaction'], share: 2, lanes: 6, attack: midSasl('final') },
  { name: 'queued for a server', modes: ['transaction', 'session'], share: 6, lanes: 1, attack: queued },
  { name: 'in a transaction', modes: ['transaction', 'session'], share: 3, lanes: 3, attack: inTransaction },
  { name: 'mid-COPY', modes: ['transaction', 'session'], share: 3, lanes: 3, attack: midCopy },
  { name: 'mid-extended-batch', modes: ['transaction', 'session'], share: 4, lanes: 3, attack: midBatch },
  { name: 'admin console', modes: ['transaction'], share: 3, lanes: 3, attack: adminConsole },
];
const TOTAL_SHARES = STAGES.reduce((n, s) => n + s.share * s.modes.length, 0);

async function runStage(stage: Stage, mode: Mode): Promise<StageStats> {
  const key = `${mode}/${stage.name}`;
  const stats: StageStats = { attempts: 0, endings: {}, sqlstates: {}, failures: [] };
  summary.set(key, stats);
  const only = ONLY?.startsWith(`${key}#`) ? Number(ONLY.slice(key.length + 1)) : null;
  if (ONLY && only === null) return stats;
  const t = targets[mode];
  const deadline = Date.now() + (BUDGET_MS * stage.share) / TOTAL_SHARES;
  let next = only ?? 0;
  const lane = async (): Promise<void> => {
    while (only === null ? Date.now() < deadline || next < MIN_ATTEMPTS : next === only) {
      const index = next++;
      const rng = new Rng(attemptSeed(SEED, key, index));
      const since = Date.now();
      const problems: string[] = [];
      let attempt: Attempt | null = null;
      try {
        attempt = await withDeadline(stage.attack(rng, t), 20_000, 'attempt');
      } catch (err) {
        problems.push(`the attempt itself failed: ${(err as Error).message}`);
      }
      stats.attempts++;
      if (attempt) {
        const { outcome } = attempt;
        stats.endings[outcome.ending] = (stats.endings[outcome.ending] ?? 0) + 1;
        for (const s of outcome.sqlstates) stats.sqlstates[s] = (stats.sqlstates[s] ?? 0) + 1;
        if (outcome.ending === 'hang') problems.push(`the hostile connection was still open after ${outcome.ms} ms`);
        // XX000 is what an unforeseen exception turns into: bad input deserves a real SQLSTATE.
        if (outcome.sqlstates.includes('XX000')) problems.push('answered XX000 (internal error) instead of the SQLSTATE of the fault');
        problems.push(...(attempt.problems ?? []));
      }
      problems.push(...(await checkAfter(t, since)));
      if (problems.length > 0) {
        const what = attempt ? `[${attempt.input.label}] input ${hex(attempt.input.writes)}` : '';
        stats.failures.push(`${key}#${index} ${what}\n  - ${problems.join('\n  - ')}`);
      }
    }
  };
  await Promise.all(Array.from({ length: only === null ? stage.lanes : 1 }, lane));
  return stats;
}

function expectNoFailures(stats: StageStats): void {
  const shown = stats.failures.slice(0, 8).join('\n');
  const more = stats.failures.length > 8 ? `\n… and ${stats.failures.length - 8} more` : '';
  expect(stats.failures.length, `FUZZ_SEED=${SEED}: ${stats.failures.length} of ${stats.attempts} inputs failed\n${shown}${more}`).toBe(0);
}

function printSummary(): void {
  const lines = ['', `fuzz summary (FUZZ_SEED=${SEED}, FUZZ_SECONDS=${BUDGET_MS / 1000})`, 'stage | inputs | endings | SQLSTATEs | failed'];
  for (const [key, s] of summary) {
    const endings = Object.entries(s.endings).map(([k, n]) => `${k} ${n}`).join(', ');
    const states = Object.entries(s.sqlstates).sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}×${n}`).join(' ');
    lines.push(`${key} | ${s.attempts} | ${endings} | ${states} | ${s.failures.length}`);
  }
  lines.push(`process faults: ${guard?.faults.length ?? 0}${guard?.faults.length ? ` (${[...new Set(guard.faults.map((f) => f.message))].join('; ')})` : ''}`);
  console.log(lines.join('\n'));
}

for (const stage of STAGES) {
  describe(stage.name, () => {
    for (const mode of stage.modes) {
      it(`${mode} mode: hostile input ends that connection only`, { timeout: (BUDGET_MS * stage.share) / TOTAL_SHARES + 60_000 }, async () => {
        expectNoFailures(await runStage(stage, mode));
      });
    }
  });
}

describe('known attacks (issue 8)', () => {
  it('transaction mode: a Query and `51 00 00 00 00` in one write, held while the server is re-parameterised, end that client only', async () => {
    const t = targets.transaction;
    const since = Date.now();
    // Same user, different application_name: after the second login the idle server carries
    // "second", so the first client's next message waits for a SET and is replayed after it.
    const first = await loggedIn(t, 'repro', { application_name: 'first' });
    const second = await loggedIn(t, 'repro', { application_name: 'second' });
    first.write(Buffer.concat([SELECT_1, Buffer.from('5100000000', 'hex')]));
    const outcome = await settle(first, { closeWithinMs: 3000 });
    expect(outcome.ending).toBe('error');
    expect(outcome.sqlstates).toContain('08P01');
    second.write(SELECT_1);
    expect(await typesUntilReady(second)).toEqual(['T', 'D', 'C', 'Z']);
    second.end();
    expect(await checkAfter(t, since)).toEqual([]);
  });

  it('transaction mode: Sync then CopyDone during COPY does not pin the server (pool_size 1)', async () => {
    const t = targets.transaction;
    const since = Date.now();
    const copier = await loggedIn(t, 'pin');
    try {
      copier.write(query('COPY fuzz_sink FROM STDIN'));
      expect((await copier.message())?.type).toBe('G');
      // PostgreSQL ignores a Sync during COPY: CopyDone gets the one CommandComplete and ReadyForQuery.
      copier.write(Buffer.concat([frame('S'), frame('c')]));
      expect(await typesUntilReady(copier)).toEqual(['C', 'Z']);
      // The copier now idles: the pool's only server must serve someone else.
      const other = await withDeadline(
        withClient(pgOptions(t.proxy.port, 'pin', FUZZ.name, FUZZ.password), async (c) => (await c.query('SELECT 2 AS two')).rows[0].two as number),
        5000,
        'another client of the pool',
      ).catch((err: Error) => err.message);
      expect(other).toBe(2);
    } finally {
      copier.end();
    }
    expect(guard.since(since)).toEqual([]);
  });

  it('transaction mode (found by this fuzzer): a client that leaves in the middle of a message it announced does not leave its server to the next client', async () => {
    const t = targets.transaction;
    const since = Date.now();
    const leaver = await loggedIn(t, 'pin');
    // A CopyData announced at 1 MB, 30 bytes of it sent, then the client hangs up: its server has a message half-written.
    leaver.write(Buffer.concat([Buffer.from('6400100000', 'hex'), Buffer.alloc(30, 0x41)]));
    expect((await settle(leaver, AFTER_LOGIN)).ending).not.toBe('hang');
    const other = await withDeadline(
      withClient(pgOptions(t.proxy.port, 'pin', FUZZ.name, FUZZ.password), async (c) => (await c.query('SELECT 2 AS two')).rows[0].two as number),
      5000,
      'the next client of the pool',
    ).catch((err: Error) => err.message);
    expect(other).toBe(2);
    expect(guard.since(since)).toEqual([]);
  });
});
