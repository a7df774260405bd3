// Differential property test: the same random client byte stream (simple and
// extended protocol, valid and failing statements, COPY in and out, copy
// messages and Syncs at random places, a few malformed messages, cut at random
// offsets into several writes) is sent (a) straight to PostgreSQL, (b) through
// pg-ingress in session mode and (c) through pg-ingress in transaction mode
// with a pool of one server. The answers must agree, message by message (type,
// SQLSTATE, command tag, row values, transaction status), except where
// pg-ingress refuses on purpose: then it must have relayed a prefix of what
// PostgreSQL answered, then a FATAL 08P01, then closed. In (c), once the client
// is idle its server must be released (or closed, if left in a transaction),
// and the next client must get exactly its own answers.
//
// About 20 s; DIFF_RUNS=500 for more, DIFF_SEED=n replays a run (the seed is
// printed on failure, with the shrunk sequence and both answer streams).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import pg from 'pg';
import type { RunningProxy } from '../../src/proxy.js';
import type { Pool } from '../../src/pool/pool.js';
import { adminSql } from '../harness/postgres.js';
import { startTestProxy, testEnv } from '../harness/proxy.js';
import { errorFields, rawLogin, type RawConn } from '../harness/raw.js';
import { Answers, bind, close, copyData, copyDone, copyFail, describe as describeMsg, execute, flush, parse, query, sync, typed } from '../harness/wire.js';

const RUNS = Number(process.env.DIFF_RUNS ?? 100);
const SEED = process.env.DIFF_SEED && /^-?\d+$/.test(process.env.DIFF_SEED) ? Number(process.env.DIFF_SEED) : 0x0d1ff008;
const USER = { name: 'diff_user', password: 'diff-secret-pw' };
/** How long a stream may take to reach the fence before it counts as hung. */
const ANSWER_MS = 2000;

// ---- the grammar ---------------------------------------------------------------------

interface Step {
  label: string;
  /** Bytes to write; none for a pause until the answers so far have arrived. */
  bytes: Buffer | null;
}

const step = (label: string, bytes: Buffer | null): Step => ({ label, bytes });

const SIMPLE = [
  'select 1',
  'begin',
  'commit',
  'rollback',
  'select 1/0',
  'select 1; select 1/0; select 2',
  'copy diff_sink from stdin',
  'copy (select 1) to stdout',
  'select 1; copy diff_sink from stdin',
  '',
  'insert into diff_deferred values (1), (1)', // fails at COMMIT (deferred unique)
];

const EXTENDED = [
  'select 1',
  'select 1/0', // fails at Execute
  'select nosuchcol', // fails at Parse
  'copy diff_sink from stdin',
  'copy (select 1) to stdout',
  'select generate_series(1, 3)',
  'begin',
  'commit',
  'insert into diff_deferred values (1), (1)',
  '',
];

// fast-check wants integer weights: quarters allow the rare ones.
const weighted = (w: number, a: fc.Arbitrary<Step>): { weight: number; arbitrary: fc.Arbitrary<Step> } => ({ weight: Math.round(w * 4), arbitrary: a });

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  weighted(5, fc.constantFrom(...SIMPLE).map((sql) => step(`Q(${sql})`, query(sql)))),
  weighted(3, fc.constantFrom(...EXTENDED).map((sql) => step(`P(${sql})`, parse('', sql)))),
  weighted(2, fc.constantFrom('', 'nope').map((s) => step(`B(${s})`, bind('', s)))),
  weighted(1, fc.constantFrom<'S' | 'P'>('S', 'P').map((k) => step(`D${k}`, describeMsg(k, '')))),
  weighted(3, fc.constantFrom(0, 1).map((n) => step(`E(${n})`, execute('', n)))),
  weighted(1, fc.constantFrom<'S' | 'P'>('S', 'P').map((k) => step(`C${k}`, close(k, '')))),
  weighted(4, fc.constant(step('S', sync()))),
  // A named statement (renamed and shared by transaction pooling), closed before each Parse:
  // PostgreSQL refuses a second Parse of a name with 42P05, which transaction pooling does not reproduce.
  weighted(2, fc.constantFrom(...EXTENDED).map((sql) => step(`CP s1(${sql})`, Buffer.concat([close('S', 's1'), parse('s1', sql)])))),
  weighted(1, fc.constant(step('B(s1)', bind('', 's1')))),
  weighted(1, fc.constant(step('DS s1', describeMsg('S', 's1')))),
  weighted(1, fc.constant(step('CS s1', close('S', 's1')))),
  weighted(2, fc.constant(step('H', flush()))),
  // What libpq writes for one statement in extended mode.
  weighted(
    3,
    fc.constantFrom(...EXTENDED).map((sql) => step(`PBDES(${sql})`, Buffer.concat([parse('', sql), bind('', ''), describeMsg('P', ''), execute('', 0), sync()]))),
  ),
  weighted(3, fc.constantFrom('1\n', '2\n3\n', 'x\n').map((t) => step(`d(${JSON.stringify(t)})`, copyData(t)))),
  weighted(2, fc.constant(step('c', copyDone()))),
  weighted(1, fc.constant(step('f', copyFail('client gave up')))),
  weighted(3, fc.constant(step('wait', null))),
  // Malformed: a Sync with a body, an unknown type.
  weighted(0.5, fc.constant(step('S+body', typed('S', Buffer.from([0]))))),
  weighted(0.25, fc.constant(step('y?', typed('y')))),
);

interface Input {
  steps: Step[];
  /** Where each write is cut, as fractions of its length. */
  cuts: number[];
  /** (c) only: disconnect right after the last write, without the closing fence. */
  leaveEarly: boolean;
}

const inputArb: fc.Arbitrary<Input> = fc.record({
  steps: fc.array(stepArb, { minLength: 1, maxLength: 10 }),
  cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 3 }),
  leaveEarly: fc.boolean(),
});

/**
 * Written first in every run, to each target alike: a simple Query drops the
 * unnamed statement, which a pooled server may still carry from an earlier run.
 */
const PRELUDE = query('');
/**
 * Written last: a Flush (PostgreSQL sends what it holds), CopyFail (ends a COPY
 * still open), Sync (ends a skip to Sync), then a Query whose error marks the
 * end in every transaction state, an aborted one included: 25P01 outside a
 * transaction block, 3B001 inside one (which it aborts, leaving it open). The
 * grammar produces neither.
 */
const FENCE = Buffer.concat([flush(), copyFail('fence'), sync(), query('rollback to savepoint diff_fence')]);
const FENCE_ERRORS = new Set(['E:ERROR:25P01', 'E:ERROR:3B001']);

// ---- playing a sequence --------------------------------------------------------------

interface Played {
  answers: Answers;
  summary: string[];
  ending: 'fence' | 'closed' | 'timeout';
  /** At each pause, how many answers had arrived (measured against PostgreSQL, then waited for). */
  counts: number[];
}

function cutInto(bytes: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => Math.floor(c * bytes.length)))].filter((n) => n > 0 && n < bytes.length).sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let prev = 0;
  for (const n of [...at, bytes.length]) {
    parts.push(bytes.subarray(prev, n));
    prev = n;
  }
  return parts;
}

const fenceReached = (summary: string[]): boolean => {
  let i = summary.length - 1;
  while (i >= 0 && !FENCE_ERRORS.has(summary[i]!)) i--;
  return i >= 0 && summary.slice(i + 1).some((s) => s.startsWith('Z:'));
};

/**
 * Writes the steps; at a pause, waits until the answers so far have arrived:
 * against PostgreSQL by waiting until it is quiet (and counting), against the
 * proxy by waiting for that count, so that both see the same interleaving.
 * Quiet is the one timed wait, and it only measures the oracle: PostgreSQL's
 * answers do not depend on timing, so a pause cut short makes an interleaving
 * less interesting, never a verdict wrong.
 */
async function play(conn: RawConn, input: Input, counts: number[] | null, fence: boolean): Promise<Played> {
  const answers = new Answers(conn);
  const measured: number[] = [];
  const segments: Buffer[][] = [[PRELUDE]];
  for (const s of input.steps) {
    if (s.bytes) segments[segments.length - 1]!.push(s.bytes);
    else segments.push([]);
  }
  if (fence) segments[segments.length - 1]!.push(FENCE);
  for (let i = 0; i < segments.length; i++) {
    if (i > 0) {
      if (counts === null) measured.push(await answers.quiet(40, 800));
      else await answers.until(() => answers.messages.length >= counts[i - 1]!, ANSWER_MS);
    }
    for (const part of cutInto(Buffer.concat(segments[i]!), input.cuts)) {
      if (answers.closed) break;
      conn.write(part);
      await new Promise((r) => setImmediate(r));
    }
  }
  if (fence) await answers.until(() => fenceReached(answers.summary), ANSWER_MS);
  const summary = answers.summary;
  return { answers, summary, ending: fenceReached(summary) ? 'fence' : answers.closed ? 'closed' : 'timeout', counts: counts ?? measured };
}

/** What pg-ingress says when it refuses a stream on purpose (see protocol/outstanding.ts and client/session.ts). */
const DELIBERATE = [/during COPY from stdin/, /behind COPY FROM STDIN/, /invalid frontend message type/];

/** null when the proxy's answers agree with PostgreSQL's, else what is wrong. */
function judge(direct: Played, proxied: Played): string | null {
  const a = direct.summary;
  const b = proxied.summary;
  if (proxied.ending === direct.ending && a.length === b.length && a.every((s, i) => s === b[i])) return null;
  const last = proxied.answers.messages.at(-1);
  if (proxied.ending === 'closed' && last?.type === 'E') {
    const f = errorFields(last.body);
    if (f.V === 'FATAL' && f.C === '08P01' && DELIBERATE.some((re) => re.test(f.M ?? ''))) {
      const before = b.slice(0, -1);
      if (before.length <= a.length && before.every((s, i) => s === a[i])) return null; // refused on purpose, after a prefix
      return `refused ("${f.M}"), but what it relayed before is not a prefix of PostgreSQL's answers`;
    }
  }
  if (proxied.ending === 'timeout') return `answers stopped (no fence within ${ANSWER_MS} ms) where PostgreSQL went on`;
  return 'answers differ';
}

// ---- the targets ---------------------------------------------------------------------

let sessionProxy: RunningProxy;
let txProxy: RunningProxy;
/** Straight to PostgreSQL, as the superuser over the socket: to look at the pool's backends. */
let observer: pg.Client;

const connectDirect = (): Promise<RawConn> => rawLogin(testEnv().cluster.port, 'app1', USER.name, USER.password, { tls: false });
const connectSession = (): Promise<RawConn> => rawLogin(sessionProxy.port, 'diff_session', USER.name, USER.password);
const connectTx = (): Promise<RawConn> => rawLogin(txProxy.port, 'diff_tx', USER.name, USER.password);

function txPool(): Pool | null {
  for (const p of txProxy.context.pools.all()) if (p.database === 'diff_tx') return p;
  return null;
}

const poolState = (): { idle: number; active: number; login: number } => {
  const s = txPool()?.state(Date.now());
  return { idle: s?.idle ?? 0, active: s?.active ?? 0, login: s?.login ?? 0 };
};

async function until(check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** PostgreSQL's own state of every idle server in the pool: each must be 'idle' (not in a transaction, not mid-command). */
async function idleServersTrulyIdle(): Promise<string[]> {
  const problems: string[] = [];
  const pool = txPool();
  if (!pool) return problems;
  for (const [server, state] of pool.servers(Date.now())) {
    if (state !== 'idle' && state !== 'used') continue;
    const r = await observer.query<{ state: string | null }>('SELECT state FROM pg_stat_activity WHERE pid = $1', [server.processId]);
    const pgState = r.rows[0]?.state ?? 'gone';
    if (pgState !== 'idle') problems.push(`the pool holds idle server ${server.id} whose backend is '${pgState}' in PostgreSQL`);
  }
  return problems;
}

/** A fresh client of the pool must get exactly its own answers (no stray messages from the last one). */
async function nextClientAnswersRight(): Promise<string[]> {
  let conn: RawConn;
  try {
    conn = await connectTx();
  } catch (err) {
    return [`the next client could not log in: ${(err as Error).message}`];
  }
  const answers = new Answers(conn);
  const problems: string[] = [];
  try {
    conn.write(query('select 1'));
    await answers.until(() => answers.messages.some((m) => m.type === 'Z'), ANSWER_MS);
    const simple = answers.summary;
    if (simple.join(' ') !== 'T D:1 C:SELECT 1 Z:I') problems.push(`the next client's "select 1" got [${simple.join(' ')}]`);
    const n = answers.messages.length;
    conn.write(Buffer.concat([parse('', 'select 2'), bind('', ''), execute('', 0), sync()]));
    await answers.until(() => answers.messages.slice(n).some((m) => m.type === 'Z'), ANSWER_MS);
    const extended = answers.summary.slice(n);
    if (extended.join(' ') !== '1 2 D:2 C:SELECT 1 Z:I') problems.push(`the next client's extended "select 2" got [${extended.join(' ')}]`);
  } finally {
    conn.end();
  }
  return problems;
}

/** (c): the stream through transaction pooling, then what became of the pool's only server. */
async function checkTransactionMode(input: Input, direct: Played): Promise<{ played: Played | null; problems: string[] }> {
  const problems: string[] = [];
  const conn = await connectTx();
  const played = await play(conn, input, direct.counts, !input.leaveEarly);
  if (!input.leaveEarly) {
    const verdict = judge(direct, played);
    if (verdict) problems.push(`transaction mode: ${verdict}`);
    const lastReady = [...played.summary].reverse().find((s) => s.startsWith('Z:'));
    if (played.ending === 'fence' && lastReady === 'Z:I') {
      // A Sync written during a COPY that then failed: whether PostgreSQL answered it is unknowable, so the
      // server stays with its client on purpose (protocol/outstanding.ts, `tainted`) and is closed when it leaves.
      const kept = [...txProxy.context.clients].some((c) => c.currentServer()?.outstanding.tainted === true);
      if (kept && poolState().active === 1) {
        // checked below: once the client leaves, that server must be closed, not pooled
      } else if (!(await until(() => poolState().idle === 1 && poolState().active === 0, 2000))) {
        problems.push(`the client is idle (ReadyForQuery I, nothing sent) but its server was not released: ${JSON.stringify(poolState())}`);
      }
    } else if (played.ending === 'fence' && poolState().active !== 1) {
      problems.push(`the client is in a transaction (${lastReady}) but its server is not attached to it: ${JSON.stringify(poolState())}`);
    }
  }
  conn.end();
  // The client left (its session ended): its server is back in the pool (clean) or closed (anything else).
  const left = (): boolean => txProxy.context.clients.size === 0 && poolState().active === 0 && poolState().login === 0;
  if (!(await until(left, 3000))) problems.push(`the server never came back after the client left: ${JSON.stringify(poolState())}`);
  problems.push(...(await idleServersTrulyIdle()));
  problems.push(...(await nextClientAnswersRight()));
  return { played: input.leaveEarly ? null : played, problems };
}

async function startProxies(): Promise<void> {
  const { cluster } = testEnv();
  const at = { host: cluster.host, port: cluster.port, dbname: 'app1' };
  sessionProxy = await startTestProxy({ pool_mode: 'session', databases: { diff_session: at } });
  txProxy = await startTestProxy({ pool_mode: 'transaction', databases: { diff_tx: { ...at, pool_size: 1 } } });
}

/** After a failed run: fresh proxies, so that what it left behind cannot make the next (shrunk) run fail. */
async function restartProxies(): Promise<void> {
  await sessionProxy.close();
  await txProxy.close();
  await startProxies();
}

const show = (input: Input): string => `${input.steps.map((s) => s.label).join(' ')}  cuts=${JSON.stringify(input.cuts.map((c) => +c.toFixed(3)))} leaveEarly=${input.leaveEarly}`;

const stats = { runs: 0, refused: 0, fence: 0 };

/** Plays one input against the three targets; returns what went wrong (with both answer streams), or null. */
async function runAll(input: Input): Promise<string | null> {
  stats.runs++;
  const problems: string[] = [];
  const opened: RawConn[] = [];
  const open = async (connect: () => Promise<RawConn>): Promise<RawConn> => {
    const c = await connect();
    opened.push(c);
    return c;
  };
  let direct: Played | null = null;
  let session: Played | null = null;
  let tx: { played: Played | null; problems: string[] } | null = null;
  try {
    direct = await play(await open(connectDirect), input, null, true);
    if (direct.ending === 'timeout') problems.push('PostgreSQL itself did not reach the fence (a test bug)');
    if (direct.ending === 'fence') stats.fence++;
    session = await play(await open(connectSession), input, direct.counts, true);
    const verdict = judge(direct, session);
    if (verdict) problems.push(`session mode: ${verdict}`);
    if (session.ending === 'closed' && direct.ending !== 'closed') stats.refused++;
    for (const c of opened) c.end();
    tx = await checkTransactionMode(input, direct);
    problems.push(...tx.problems);
  } catch (err) {
    problems.push(`the run itself failed: ${(err as Error).message}`);
  } finally {
    for (const c of opened) c.end();
  }
  if (problems.length === 0) return null;
  return [
    `  sequence:    ${show(input)}`,
    ...(direct ? [`  PostgreSQL:  ${direct.summary.join(' ')} [${direct.ending}]`] : []),
    ...(session ? [`  session:     ${session.summary.join(' ')} [${session.ending}]`] : []),
    ...(tx?.played ? [`  transaction: ${tx.played.summary.join(' ')} [${tx.played.ending}]`] : []),
    ...problems.map((p) => `  - ${p}`),
  ].join('\n');
}

beforeAll(async () => {
  const { cluster } = testEnv();
  await adminSql(
    cluster,
    `DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${USER.name}') THEN CREATE ROLE ${USER.name} LOGIN; END IF; END $$; ALTER ROLE ${USER.name} PASSWORD '${USER.password}'`,
  );
  await adminSql(
    cluster,
    [
      'CREATE TABLE IF NOT EXISTS diff_sink (a int)',
      'CREATE TABLE IF NOT EXISTS diff_deferred (a int UNIQUE DEFERRABLE INITIALLY DEFERRED)',
      `GRANT ALL ON diff_sink, diff_deferred TO ${USER.name}`,
    ].join(';'),
    'app1',
  );
  await startProxies();
  observer = new pg.Client({ host: cluster.socketDir, port: cluster.port, user: 'postgres', database: 'app1' });
  await observer.connect();
});

afterAll(async () => {
  await observer?.end().catch(() => undefined);
  await sessionProxy?.close();
  await txProxy?.close();
  await adminSql(testEnv().cluster, 'DROP TABLE IF EXISTS diff_sink, diff_deferred', 'app1').catch(() => undefined);
});

describe('PostgreSQL and pg-ingress answer the same bytes alike', () => {
  it('grammar sanity: libpq COPY by Execute, a failed COMMIT at Sync and a skip to Sync, straight to PostgreSQL', async () => {
    const input: Input = {
      steps: [
        step('PBDES(copy)', Buffer.concat([parse('', 'copy diff_sink from stdin'), bind('', ''), describeMsg('P', ''), execute('', 0), sync()])),
        step('wait', null),
        step('d c S', Buffer.concat([copyData('1\n'), copyDone(), sync()])),
        step('PBES(deferred)', Buffer.concat([parse('', 'insert into diff_deferred values (1), (1)'), bind('', ''), execute('', 0), sync()])),
        step('P(bad) B E S', Buffer.concat([parse('', 'select nosuchcol'), bind('', ''), execute('', 0), query('select 1'), sync()])),
      ],
      cuts: [],
      leaveEarly: false,
    };
    const conn = await connectDirect();
    const played = await play(conn, input, null, true);
    conn.end();
    expect(played.ending).toBe('fence');
    expect(played.summary).toEqual([
      'I',
      'Z:I',
      ...['1', '2', 'n', 'G'],
      ...['C:COPY 1', 'Z:I'],
      ...['1', '2', 'C:INSERT 0 2', 'E:ERROR:23505', 'Z:I'],
      ...['E:ERROR:42703', 'Z:I'], // the Query after the failed Parse was skipped
      ...['Z:I', 'E:ERROR:25P01', 'Z:I'], // the fence: Flush and CopyFail ignored outside COPY
    ]);
  });

  // Sequences that broke an earlier model of what a server owes, or that PostgreSQL answers in a way
  // easy to get wrong; each through all three targets, as one run of the property.
  const WAIT = step('wait', null);
  const pbdes = (sql: string): Step => step(`PBDES(${sql})`, Buffer.concat([parse('', sql), bind('', ''), describeMsg('P', ''), execute('', 0), sync()]));
  const fixed: [string, Step[], boolean][] = [
    ['issue 8: Sync then CopyDone after CopyInResponse', [step('Q(copy)', query('copy diff_sink from stdin')), WAIT, step('S c', Buffer.concat([sync(), copyDone()]))], false],
    ['libpq COPY by Execute: P/B/D/E/S, then d c S', [pbdes('copy diff_sink from stdin'), WAIT, step('d c S', Buffer.concat([copyData('1\n'), copyDone(), sync()]))], false],
    ['COPY by Execute ended by CopyFail, client leaves: the skipping server is not pooled', [pbdes('copy diff_sink from stdin'), WAIT, step('f H', Buffer.concat([copyFail('no'), flush()])), WAIT], true],
    ['COPY by Execute ended, no Sync, client leaves: the open implicit transaction is not pooled', [pbdes('copy diff_sink from stdin'), WAIT, step('d c H', Buffer.concat([copyData('1\n'), copyDone(), flush()])), WAIT], true],
    ['a Query written after an extended error arrived is skipped: no ReadyForQuery for it', [step('P(bad) H', Buffer.concat([parse('', 'select nosuchcol'), flush()])), WAIT, step('Q S', Buffer.concat([query('select 1'), sync()]))], false],
    ['CopyData behind an Execute with no Sync or Flush: held, then released by a Flush', [step('P B E d S', Buffer.concat([parse('', 'select 1'), bind('', ''), execute('', 0), copyData('1\n'), sync()]))], false],
    ['a COPY by Query fails on bad data; a Sync written after the error arrived is answered', [step('Q(copy)', query('copy diff_sink from stdin')), WAIT, step('d(x)', copyData('x\n')), WAIT, step('S c', Buffer.concat([sync(), copyDone()]))], false],
    ['a COPY by Query fails on bad data; a Sync written right behind the bad data is answered', [step('Q(copy)', query('copy diff_sink from stdin')), WAIT, step('d(x) S', Buffer.concat([copyData('x\n'), sync()])), WAIT, step('c', copyDone())], false],
    ['a COPY by Execute fails on bad data; the Sync right behind it ends the skip', [pbdes('copy diff_sink from stdin'), WAIT, step('d(x) S', Buffer.concat([copyData('x\n'), sync()])), WAIT], false],
  ];
  for (const [name, steps, leaveEarly] of fixed) {
    it(name, async () => {
      const failure = await runAll({ steps, cuts: [], leaveEarly });
      if (failure) await restartProxies();
      expect(failure, failure ?? '').toBeNull();
    });
  }

  it(`random client streams (${RUNS} runs, DIFF_SEED=${SEED})`, { timeout: 240_000 }, async () => {
    let dirty = false;
    await fc.assert(
      fc.asyncProperty(inputArb, async (input) => {
        if (dirty) await restartProxies();
        dirty = true; // until this run has passed
        const failure = await runAll(input);
        if (failure) throw new Error(`DIFF_SEED=${SEED}\n${failure}`);
        dirty = false;
      }),
      { numRuns: RUNS, seed: SEED, interruptAfterTimeLimit: 60_000, markInterruptAsFailure: false },
    );
    console.log(`differential: ${stats.runs} runs, ${stats.fence} reached the fence on PostgreSQL, ${stats.refused} refused on purpose by the proxy`);
  });
});
