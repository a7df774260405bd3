// What a server still owes (src/protocol/outstanding.ts), checked two ways:
// explicit message sequences as libpq and PostgreSQL exchange them, and a
// fast-check property against a small simulator of PostgreSQL's backend input
// loop written here from postgres.c (PostgresMain, SocketBackend,
// ignore_till_sync) and copyfromparse.c (CopyGetData ignores Flush and Sync),
// independent of the model under test.
// https://www.postgresql.org/docs/current/protocol-flow.html
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Admit, MAX_OUTSTANDING, Outstanding } from '../../../src/protocol/outstanding.js';

const code = (t: string): number => t.charCodeAt(0);

/** Writes client messages the way the session does: admit, then record what is answered. */
function send(out: Outstanding, types: string): Admit[] {
  return [...types].map((t) => {
    const a = out.admit(code(t), 5);
    if (a === Admit.Forward) out.sent(code(t));
    return a;
  });
}

/** Feeds server message types; returns what received() said for each. */
function answer(out: Outstanding, types: string): boolean[] {
  return [...types].map((t) => out.received(code(t)));
}

const fresh = (): Outstanding => new Outstanding();

describe('Outstanding: explicit sequences', () => {
  it('simple Query: owed until its ReadyForQuery', () => {
    const out = fresh();
    expect(send(out, 'Q')).toEqual([Admit.Forward]);
    expect(out.syncPoints).toBe(1);
    expect(out.settled).toBe(false);
    answer(out, 'TDC');
    expect(out.syncPoints).toBe(1);
    expect(out.settled).toBe(false);
    answer(out, 'Z');
    expect(out.syncPoints).toBe(0);
    expect(out.length).toBe(0);
    expect(out.settled).toBe(true);
  });

  it('multi-statement Query with an error: the error is followed by the one ReadyForQuery', () => {
    const out = fresh();
    send(out, 'Q'); // select 1; select 1/0; select 2
    answer(out, 'TDCE');
    expect(out.syncPoints).toBe(1);
    expect(out.settled).toBe(false);
    answer(out, 'Z');
    expect(out.settled).toBe(true);
  });

  it('two pipelined Queries: one ReadyForQuery each', () => {
    const out = fresh();
    send(out, 'QQ');
    expect(out.syncPoints).toBe(2);
    answer(out, 'TDCZ');
    expect(out.syncPoints).toBe(1);
    answer(out, 'EZ');
    expect(out.settled).toBe(true);
  });

  it('P/B/D/E/S: each message settled by its own answer, unsynced until the Sync is written', () => {
    const out = fresh();
    send(out, 'PBDE');
    expect(out.unsynced).toBe(true);
    expect(out.syncPoints).toBe(0);
    expect(out.settled).toBe(false);
    send(out, 'S');
    expect(out.unsynced).toBe(false);
    expect(out.length).toBe(5);
    answer(out, '1');
    expect(out.length).toBe(4);
    answer(out, '2');
    expect(out.length).toBe(3);
    answer(out, 'T'); // the portal's RowDescription answers Describe
    expect(out.length).toBe(2);
    answer(out, 'DD');
    expect(out.length).toBe(2);
    answer(out, 'C');
    expect(out.length).toBe(1);
    expect(out.settled).toBe(false);
    answer(out, 'Z');
    expect(out.settled).toBe(true);
  });

  it('Describe of a statement: ParameterDescription settles nothing, RowDescription or NoData does', () => {
    const out = fresh();
    send(out, 'PDS');
    answer(out, '1t');
    expect(out.length).toBe(2);
    answer(out, 'n');
    expect(out.length).toBe(1);
    answer(out, 'Z');
    expect(out.settled).toBe(true);
  });

  it('Execute answered by EmptyQueryResponse or PortalSuspended', () => {
    const out = fresh();
    send(out, 'PBEEES');
    answer(out, '12I');
    expect(out.length).toBe(3);
    answer(out, 'Ds');
    expect(out.length).toBe(2);
    answer(out, 'DC');
    expect(out.length).toBe(1);
    answer(out, 'Z');
    expect(out.settled).toBe(true);
  });

  it('an error in Parse skips Bind, Execute, Query and FunctionCall up to the Sync: the skipped Query gets no ReadyForQuery', () => {
    const out = fresh();
    send(out, 'PBEQFS');
    expect(out.syncPoints).toBe(3);
    expect(out.syncSent).toBe(3);
    answer(out, 'E');
    expect(out.length).toBe(1); // only the Sync is left
    expect(out.syncPoints).toBe(1);
    expect(out.syncDone).toBe(2); // the skipped Query and FunctionCall count as settled batches
    answer(out, 'Z');
    expect(out.settled).toBe(true);
    expect(out.syncDone).toBe(3);
  });

  it('an error without a Sync written yet: the server waits for one, so nothing is settled', () => {
    const out = fresh();
    send(out, 'PBE');
    answer(out, 'E');
    expect(out.length).toBe(0);
    expect(out.unsynced).toBe(true);
    expect(out.settled).toBe(false);
    send(out, 'S');
    answer(out, 'Z');
    expect(out.settled).toBe(true);
  });

  it('an error in an earlier batch leaves later batches owed', () => {
    const out = fresh();
    send(out, 'PBESPBES');
    answer(out, '12E');
    expect(out.length).toBe(5);
    answer(out, 'Z');
    expect(out.syncPoints).toBe(1);
    answer(out, '12CZ');
    expect(out.settled).toBe(true);
  });

  it('an error at Sync (a failing COMMIT) still gets its ReadyForQuery', () => {
    const out = fresh();
    send(out, 'PBES');
    answer(out, '12C');
    expect(out.length).toBe(1);
    answer(out, 'E');
    expect(out.syncPoints).toBe(1);
    expect(out.settled).toBe(false);
    answer(out, 'Z');
    expect(out.settled).toBe(true);
  });

  it('FunctionCall: answered by FunctionCallResponse and ReadyForQuery; an error in it does not skip to Sync', () => {
    const out = fresh();
    send(out, 'FF');
    answer(out, 'VZ');
    expect(out.syncPoints).toBe(1);
    answer(out, 'E');
    expect(out.syncPoints).toBe(1);
    answer(out, 'Z');
    expect(out.settled).toBe(true);
  });

  it('a Query or FunctionCall after extended messages commits their implicit transaction: settled at its ReadyForQuery', () => {
    for (const t of 'QF') {
      const out = fresh();
      send(out, `PB${t}`);
      expect(out.unsynced).toBe(false);
      answer(out, t === 'Q' ? '12TDCZ' : '12VZ');
      expect(out.settled, t).toBe(true);
    }
  });

  it('an ErrorResponse with nothing outstanding (a FATAL before the server closes) settles nothing', () => {
    const out = fresh();
    answer(out, 'E');
    expect(out.settled).toBe(true);
    send(out, 'Q');
    answer(out, 'Z');
    answer(out, 'E');
    expect(out.settled).toBe(true);
  });

  it('COPY FROM STDIN by Query: copy messages stream unanswered, CopyDone ends it, the Query ends with ReadyForQuery', () => {
    const out = fresh();
    send(out, 'Q');
    expect(answer(out, 'G')).toEqual([true]);
    expect(out.copyIn).toBe(true);
    expect(out.settled).toBe(false);
    expect(send(out, 'ddd')).toEqual([Admit.ForwardUnanswered, Admit.ForwardUnanswered, Admit.ForwardUnanswered]);
    expect(out.length).toBe(1);
    expect(send(out, 'c')).toEqual([Admit.ForwardUnanswered]);
    expect(out.copyIn).toBe(false);
    expect(out.settled).toBe(false);
    answer(out, 'C');
    expect(out.settled).toBe(false);
    answer(out, 'Z');
    expect(out.settled).toBe(true);
  });

  it('COPY FROM STDIN by Query ended by CopyFail: ErrorResponse then ReadyForQuery', () => {
    const out = fresh();
    send(out, 'Q');
    answer(out, 'G');
    expect(send(out, 'df')).toEqual([Admit.ForwardUnanswered, Admit.ForwardUnanswered]);
    answer(out, 'E');
    expect(out.syncPoints).toBe(1);
    answer(out, 'Z');
    expect(out.settled).toBe(true);
  });

  it('COPY FROM STDIN by Execute as libpq sends it: P/B/D/E/S, then after CopyInResponse d…, c, S', () => {
    const out = fresh();
    send(out, 'PBDES');
    expect(out.syncPoints).toBe(1);
    answer(out, '12n'); // a COPY portal has no row description
    expect(answer(out, 'G')).toEqual([true]);
    // The Sync written before CopyInResponse is read inside the COPY and ignored: no ReadyForQuery for it.
    expect(out.syncPoints).toBe(0);
    expect(out.syncDone).toBe(1);
    expect(out.copyIn).toBe(true);
    expect(out.settled).toBe(false);
    expect(send(out, 'ddc')).toEqual([Admit.ForwardUnanswered, Admit.ForwardUnanswered, Admit.ForwardUnanswered]);
    expect(send(out, 'S')).toEqual([Admit.Forward]);
    expect(out.syncPoints).toBe(1);
    answer(out, 'C');
    expect(out.settled).toBe(false); // the Sync's ReadyForQuery is still owed
    answer(out, 'Z');
    expect(out.settled).toBe(true);
    expect(out.syncSent).toBe(2);
    expect(out.syncDone).toBe(2);
  });

  it('COPY by Execute with several Syncs written before CopyInResponse: all of them are ignored', () => {
    const out = fresh();
    send(out, 'PBESS');
    answer(out, '12G');
    expect(out.syncPoints).toBe(0);
    expect(out.length).toBe(1);
    send(out, 'cS');
    answer(out, 'CZ');
    expect(out.settled).toBe(true);
  });

  it('issue 8: after CopyInResponse the client sends Sync then CopyDone: settled after the final ReadyForQuery, no ReadyForQuery owed', () => {
    const out = fresh();
    send(out, 'Q');
    answer(out, 'G');
    expect(send(out, 'S')).toEqual([Admit.ForwardUnanswered]); // PostgreSQL ignores it inside COPY
    expect(send(out, 'H')).toEqual([Admit.ForwardUnanswered]);
    expect(send(out, 'c')).toEqual([Admit.ForwardUnanswered]);
    answer(out, 'CZ');
    expect(out.syncPoints).toBe(0);
    expect(out.length).toBe(0);
    expect(out.settled).toBe(true);
  });

  it('issue 8 by Execute: Sync during COPY unanswered, the Sync after CopyDone answered', () => {
    const out = fresh();
    send(out, 'PBES');
    answer(out, '12G');
    expect(send(out, 'dSc')).toEqual([Admit.ForwardUnanswered, Admit.ForwardUnanswered, Admit.ForwardUnanswered]);
    expect(send(out, 'S')).toEqual([Admit.Forward]);
    answer(out, 'CZ');
    expect(out.syncPoints).toBe(0);
    expect(out.settled).toBe(true);
  });

  it('a Sync during a COPY that then fails: whether PostgreSQL answers it is unknowable, so the server is never settled again', () => {
    const out = fresh();
    send(out, 'Q');
    answer(out, 'G');
    send(out, 'dS'); // bad data, then a Sync: PostgreSQL errors at the data and then answers the Sync
    answer(out, 'EZZ');
    expect(out.tainted).toBe(true);
    expect(out.settled).toBe(false);
  });

  it('a Sync during a COPY that succeeds was ignored: no taint, settled after the last ReadyForQuery', () => {
    const out = fresh();
    send(out, 'Q');
    answer(out, 'G');
    send(out, 'dSc');
    answer(out, 'CZ');
    expect(out.tainted).toBe(false);
    expect(out.settled).toBe(true);
  });

  it('CopyData before CopyInResponse is held while a Query or Execute could still turn out to be a COPY', () => {
    const out = fresh();
    send(out, 'Q');
    expect(out.admit(code('d'), 10)).toBe(Admit.Hold);
    expect(out.admit(code('c'), 5)).toBe(Admit.Hold);
    expect(out.admit(code('f'), 10)).toBe(Admit.Hold);
    answer(out, 'G');
    expect(out.admit(code('d'), 10)).toBe(Admit.ForwardUnanswered);

    const ext = fresh();
    send(ext, 'PBE');
    answer(ext, '12');
    expect(ext.admit(code('d'), 10)).toBe(Admit.Hold);
    answer(ext, 'C'); // not a COPY after all
    expect(ext.admit(code('d'), 10)).toBe(Admit.ForwardUnanswered);
  });

  it('copy messages with no Query or Execute outstanding are forwarded unanswered (the server ignores them)', () => {
    const out = fresh();
    expect(send(out, 'dcf')).toEqual([Admit.ForwardUnanswered, Admit.ForwardUnanswered, Admit.ForwardUnanswered]);
    expect(out.settled).toBe(true);
    send(out, 'PB'); // no Execute: cannot become a COPY
    expect(out.admit(code('d'), 9)).toBe(Admit.ForwardUnanswered);
    send(out, 'S');
    answer(out, '12Z');
    send(out, 'Q');
    answer(out, 'TDCZ');
    expect(out.admit(code('d'), 9)).toBe(Admit.ForwardUnanswered);
  });

  it('a non-copy message during COPY is a violation', () => {
    for (const t of 'QPBDECF') {
      const out = fresh();
      send(out, 'Q');
      answer(out, 'G');
      expect(out.admit(code(t), 10), t).toBe(Admit.Violation);
      expect(out.copyIn).toBe(true);
    }
  });

  it('messages pipelined behind a COPY command make CopyInResponse refused', () => {
    const byQuery = fresh();
    send(byQuery, 'QQ');
    expect(answer(byQuery, 'G')).toEqual([false]);

    const byExecute = fresh();
    send(byExecute, 'PBESPBES');
    expect(answer(byExecute, '12G')).toEqual([true, true, false]);

    const queryAfterSync = fresh();
    send(queryAfterSync, 'PBESQ');
    expect(answer(queryAfterSync, '12G')).toEqual([true, true, false]);
  });

  it('a CopyInResponse with nothing outstanding, or COPY BOTH, is refused', () => {
    expect(answer(fresh(), 'G')).toEqual([false]);
    const out = fresh();
    send(out, 'Q');
    expect(answer(out, 'W')).toEqual([false]);
  });

  it('Flush is forwarded unanswered; outside COPY it leaves the counts alone', () => {
    const out = fresh();
    send(out, 'PB');
    expect(out.admit(code('H'), 5)).toBe(Admit.ForwardUnanswered);
    expect(out.length).toBe(2);
    expect(out.syncPoints).toBe(0);
  });

  it('a Sync or Flush with a body is a violation', () => {
    const out = fresh();
    expect(out.admit(code('S'), 6)).toBe(Admit.Violation);
    expect(out.admit(code('S'), 4)).toBe(Admit.Violation);
    expect(out.admit(code('H'), 9)).toBe(Admit.Violation);
    expect(out.admit(code('S'), 5)).toBe(Admit.Forward);
  });

  it('unknown message types are violations (backend types, startup-era types, garbage)', () => {
    const out = fresh();
    for (const t of [0, 1, 0x31, code('Z'), code('T'), code('G'), code('p'), code('W'), 0x7f, 0xff]) {
      expect(out.admit(t, 5), `type 0x${t.toString(16)}`).toBe(Admit.Violation);
    }
  });

  it('at MAX_OUTSTANDING answered messages are held, unanswered ones still pass', () => {
    const out = fresh();
    for (let i = 0; i < MAX_OUTSTANDING; i++) out.sent(code('P'));
    expect(out.length).toBe(MAX_OUTSTANDING);
    expect(out.admit(code('B'), 10)).toBe(Admit.Hold);
    expect(out.admit(code('S'), 5)).toBe(Admit.Hold);
    expect(out.admit(code('H'), 5)).toBe(Admit.ForwardUnanswered);
    expect(out.admit(code('d'), 10)).toBe(Admit.ForwardUnanswered);
    answer(out, '1');
    expect(out.admit(code('B'), 10)).toBe(Admit.Forward);
  });

  it('syncSent and syncDone number the batches: Query, Sync and FunctionCall each end one', () => {
    const out = fresh();
    send(out, 'QPBESF');
    expect(out.syncSent).toBe(3);
    expect(out.syncDone).toBe(0);
    answer(out, 'CZ');
    expect(out.syncDone).toBe(1);
    answer(out, '12CZ');
    expect(out.syncDone).toBe(2);
    answer(out, 'VZ');
    expect(out.syncDone).toBe(3);
    expect(out.syncSent).toBe(3);
  });

  it('clear() forgets everything', () => {
    const out = fresh();
    send(out, 'PBEQ');
    answer(out, '12');
    out.clear();
    expect(out.settled).toBe(true);
    expect(out.syncPoints).toBe(0);
    expect(out.admit(code('d'), 9)).toBe(Admit.ForwardUnanswered); // no COPY candidate left
  });

  it('the ring grows past 16 entries and wraps correctly (push and pop interleaved thousands of times)', () => {
    const out = fresh();
    const model: string[] = [];
    const answerOf: Record<string, string> = { P: '1', B: '2', C: '3', D: 'n' };
    let seed = 12345;
    const rand = (n: number): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) % n;
    for (let round = 0; round < 5000; round++) {
      // Bursts larger than the ring (16, then 32, …) and pops that leave the head anywhere.
      const pushes = round % 97 === 0 ? 40 + rand(200) : rand(6);
      for (let i = 0; i < pushes; i++) {
        const t = 'PBCD'[rand(4)]!;
        out.sent(code(t));
        model.push(t);
      }
      const pops = rand(7);
      for (let i = 0; i < pops && model.length > 0; i++) {
        // An answer for another type than the head's settles nothing.
        const wrong = Object.keys(answerOf).find((k) => k !== model[0])!;
        out.received(code(answerOf[wrong]!));
        expect(out.length).toBe(model.length);
        out.received(code(answerOf[model.shift()!]!));
        expect(out.length).toBe(model.length);
      }
    }
    // Drain through a Sync: ReadyForQuery pops everything before it.
    out.sent(code('S'));
    expect(out.length).toBe(model.length + 1);
    answer(out, 'Z');
    expect(out.length).toBe(0);
    expect(out.settled).toBe(true);
  });
});

// Regressions: defects the simulator below found in src/protocol/outstanding.ts as of 8201360 (fixed in 53bff68).
describe('Outstanding: what PostgreSQL does after a COPY ends', () => {
  it('a COPY by Execute that ended (CommandComplete) still waits for the Sync after it: not settled until that Sync is answered', () => {
    // libpq writes P/B/D/E/S; the Sync is read and ignored inside the COPY. After CopyDone the
    // Execute completes, but its implicit transaction stays open until the next Sync.
    const out = fresh();
    send(out, 'PBDES');
    answer(out, '12nG');
    send(out, 'dc');
    answer(out, 'C');
    expect(out.length).toBe(0);
    expect(out.unsynced).toBe(true);
    expect(out.settled).toBe(false);
  });

  it('CopyFail in a COPY by Execute: the server now skips to the next Sync, so it is not settled', () => {
    // The Sync written before CopyInResponse was ignored inside the COPY: no Sync is on its way.
    const out = fresh();
    send(out, 'PBES');
    answer(out, '12G');
    send(out, 'f');
    answer(out, 'E');
    expect(out.settled).toBe(false); // was settled: released, the next client's messages would have been skipped
  });

  it('messages written after an extended-protocol error, before the Sync, are skipped too: a Query among them gets no ReadyForQuery', () => {
    const out = fresh();
    send(out, 'PH'); // a failing Parse, flushed: the error arrives before anything else is written
    answer(out, 'E');
    send(out, 'QS'); // PostgreSQL skips the Query; only the Sync is answered
    answer(out, 'Z');
    expect(out.syncPoints).toBe(0); // was 1: the Sync's entry stayed owed, so the server was never released
    expect(out.settled).toBe(true);
  });

  it('an error during COPY FROM STDIN by Query ends the COPY: after its ReadyForQuery the server is idle', () => {
    // Bad data: PostgreSQL sends ErrorResponse and ReadyForQuery at once and leaves COPY mode;
    // later CopyData/CopyDone are ignored, and a new Query is answered normally.
    const out = fresh();
    send(out, 'Q');
    answer(out, 'G');
    send(out, 'd');
    answer(out, 'EZ');
    expect(out.copyIn).toBe(false);
    expect(out.settled).toBe(true);
    expect(out.admit(code('Q'), 20)).toBe(Admit.Forward);
  });

  it('an error during COPY FROM STDIN by Execute: the server skips to the next Sync, so a Sync written after the error must reach it', () => {
    const out = fresh();
    send(out, 'PBES');
    answer(out, '12G');
    send(out, 'd');
    answer(out, 'E');
    expect(out.admit(code('S'), 5)).toBe(Admit.Forward); // was dropped: the server waited forever
  });
});

// ---- the simulator -----------------------------------------------------------------

/** What a statement or message does when PostgreSQL runs it. */
type Outcome = 'ok' | 'error' | 'copyIn' | 'copyOut' | 'empty' | 'suspend' | 'noData';

interface ClientMsg {
  type: string;
  /** Query: one outcome per statement (an error ends the Query); others: one. */
  outcomes: Outcome[];
  /** Frame length as the proxy sees it (5 for a bodiless message). */
  length: number;
}

/**
 * PostgreSQL's backend, message by message: the main loop (postgres.c) and,
 * in COPY FROM STDIN, CopyGetData (copyfromparse.c). Output is buffered as the
 * backend buffers it: ReadyForQuery, ErrorResponse, CopyInResponse and Flush
 * flush (pq_flush), everything else waits in the buffer.
 */
class Backend {
  readonly input: ClientMsg[] = [];
  /** Flushed: on the wire, the proxy may receive it. */
  readonly wire: string[] = [];
  /** Written into the backend's output buffer, not flushed yet. */
  unflushed: string[] = [];
  copyIn: null | { origin: 'query' | 'execute'; rest: Outcome[] } = null;
  ignoreTillSync = false;
  doingExtended = false;
  /** An extended-protocol message started a transaction command that no Sync, Query or FunctionCall has finished yet. */
  xactOpen = false;

  clone(): Backend {
    const b = new Backend();
    b.input.push(...this.input);
    b.wire.push(...this.wire);
    b.unflushed = [...this.unflushed];
    b.copyIn = this.copyIn && { ...this.copyIn, rest: [...this.copyIn.rest] };
    b.ignoreTillSync = this.ignoreTillSync;
    b.doingExtended = this.doingExtended;
    b.xactOpen = this.xactOpen;
    return b;
  }

  /** Reads and handles the next message written to it. */
  step(): void {
    const m = this.input.shift()!;
    if (this.copyIn) this.inCopy(m);
    else this.mainLoop(m);
  }

  /** Idle: nothing to read, nothing unsent, not in COPY, not skipping to Sync, no implicit transaction open. */
  get idle(): boolean {
    return this.input.length === 0 && this.wire.length === 0 && this.unflushed.length === 0 && !this.copyIn && !this.ignoreTillSync && !this.xactOpen;
  }

  /** ReadyForQuery messages it will still send for what it was sent (a COPY by Query ends with one, however it ends). */
  futureReady(): number {
    const b = this.clone();
    while (b.input.length > 0) b.step();
    return [...b.wire, ...b.unflushed].filter((t) => t === 'Z').length + (b.copyIn?.origin === 'query' ? 1 : 0);
  }

  private emit(...types: string[]): void {
    this.unflushed.push(...types);
  }

  private flush(): void {
    this.wire.push(...this.unflushed);
    this.unflushed = [];
  }

  /** ReadyForQuery comes after finish_xact_command: whatever transaction command was open is finished. */
  private ready(): void {
    this.xactOpen = false;
    this.emit('Z');
    this.flush();
  }

  /** ereport(ERROR) and PostgresMain's recovery: skip to Sync if an extended message failed, else ReadyForQuery. */
  private error(): void {
    this.xactOpen = false; // AbortCurrentTransaction
    this.emit('E');
    this.flush(); // send_message_to_frontend flushes
    if (this.doingExtended) this.ignoreTillSync = true;
    else this.ready();
  }

  private mainLoop(m: ClientMsg): void {
    // SocketBackend's bookkeeping happens for every message, skipped or not.
    if ('PBCDEH'.includes(m.type)) this.doingExtended = true;
    if ('QFdcf'.includes(m.type)) this.doingExtended = false;
    if (m.type === 'S') {
      this.ignoreTillSync = false;
      this.doingExtended = false;
    }
    if (this.ignoreTillSync) return;
    if ('PBCDE'.includes(m.type)) this.xactOpen = true; // start_xact_command
    const outcome = m.outcomes[0] ?? 'ok';
    switch (m.type) {
      case 'Q':
        this.statements(m.outcomes);
        return;
      case 'P':
        return outcome === 'error' ? this.error() : this.emit('1');
      case 'B':
        return outcome === 'error' ? this.error() : this.emit('2');
      case 'C':
        return this.emit('3');
      case 'D':
        return outcome === 'error' ? this.error() : this.emit(...(outcome === 'noData' ? ['t', 'n'] : ['T']));
      case 'E':
        switch (outcome) {
          case 'error':
            return this.error();
          case 'empty':
            return this.emit('I');
          case 'suspend':
            return this.emit('D', 's');
          case 'copyOut':
            return this.emit('H', 'd', 'c', 'C');
          case 'copyIn':
            this.emit('G');
            this.flush(); // ReceiveCopyBegin flushes: the client must know it can send
            this.copyIn = { origin: 'execute', rest: [] };
            return;
          default:
            return this.emit('D', 'C');
        }
      case 'S':
        if (outcome === 'error') this.error(); // a failing COMMIT: ErrorResponse, then ReadyForQuery
        else this.ready();
        return;
      case 'F':
        if (outcome === 'error') this.error();
        else {
          this.emit('V');
          this.ready();
        }
        return;
      case 'H':
        this.flush();
        return;
      default:
        return; // CopyData, CopyDone, CopyFail outside COPY: ignored
    }
  }

  /** exec_simple_query: statements in order until one fails or starts a COPY; then ReadyForQuery. */
  private statements(outcomes: Outcome[]): void {
    for (let i = 0; i < outcomes.length; i++) {
      switch (outcomes[i]) {
        case 'error':
          this.error();
          return;
        case 'copyIn':
          this.emit('G');
          this.flush();
          this.copyIn = { origin: 'query', rest: outcomes.slice(i + 1) };
          return;
        case 'copyOut':
          this.emit('H', 'd', 'c', 'C');
          break;
        case 'empty':
          this.emit('I');
          break;
        default:
          this.emit('T', 'D', 'C');
      }
    }
    this.ready();
  }

  private inCopy(m: ClientMsg): void {
    const copy = this.copyIn!;
    switch (m.type) {
      case 'd':
        if (m.outcomes[0] === 'error') this.copyFailed(); // bad data
        return;
      case 'c':
        if (m.outcomes[0] === 'error') return this.copyFailed(); // e.g. a constraint checked at the end
        this.copyIn = null;
        this.emit('C');
        if (copy.origin === 'query') this.statements(copy.rest);
        return;
      case 'S':
      case 'H':
        return; // "Ignore Flush/Sync for the convenience of client libraries"
      default:
        return this.copyFailed(); // CopyFail, or any other message: ERROR
    }
  }

  private copyFailed(): void {
    this.copyIn = null;
    this.error(); // doingExtended is still what the Query or Execute set
  }
}

// ---- the driver: a proxy writing a client's messages as the session does ---------

interface Run {
  msgs: ClientMsg[];
  /** Which of the possible steps to take next: write a message, let the server read one, receive an answer. */
  schedule: number[];
}

interface Trace {
  /** Violations of the invariants, with the step they happened at. */
  failures: string[];
  /** The proxy could not go on: a held message that nothing will release, while the server waits. */
  deadlock: string | null;
  log: string[];
}

const ADMIT = ['Forward', 'ForwardUnanswered', 'Hold', 'Violation'];

function drive({ msgs, schedule }: Run): Trace {
  const out = new Outstanding();
  const pg = new Backend();
  const trace: Trace = { failures: [], deadlock: null, log: [] };
  let next = 0;
  let turn = 0;
  let flushedForHold = false;
  const fail = (what: string): void => void trace.failures.push(`${what} after [${trace.log.join(' ')}]`);

  const check = (): void => {
    // Safety, at every step: the release decision may never be taken while the server owes anything.
    if (out.settled) {
      const after = pg.clone();
      while (after.input.length > 0) after.step();
      if (!after.idle) fail(`settled while PostgreSQL is not idle (copy=${!!after.copyIn} skipping=${after.ignoreTillSync} transaction=${after.xactOpen} owes=${[...after.wire, ...after.unflushed].join('')})`);
    }
    // A Sync written during a COPY that then failed: what is owed is unknowable, so the server is never
    // settled again (it stays with its client and is closed afterwards); the counts stop mattering.
    if (out.uncertain) return;
    const owed = pg.futureReady();
    if (out.syncPoints < owed) fail(`syncPoints ${out.syncPoints} < ${owed} ReadyForQuery still to come`);
    // At rest (the server read everything, everything flushed arrived): the counts are exact.
    if (pg.input.length === 0 && pg.wire.length === 0) {
      if (out.syncPoints !== owed) fail(`at rest syncPoints ${out.syncPoints} but PostgreSQL will send ${owed} ReadyForQuery`);
      if (out.settled !== pg.idle) fail(`at rest settled=${out.settled} but PostgreSQL idle=${pg.idle}`);
      if (out.copyIn !== !!pg.copyIn) fail(`at rest copyIn=${out.copyIn} but PostgreSQL in COPY=${!!pg.copyIn}`);
    }
  };

  for (let guard = 0; guard < 10_000; guard++) {
    const choices = [next < msgs.length && 'write', pg.input.length > 0 && 'read', pg.wire.length > 0 && 'receive'].filter(Boolean) as string[];
    if (choices.length === 0) break;
    let action = choices[(schedule[turn++] ?? 0) % choices.length]!;
    if (action === 'write') {
      const m = msgs[next]!;
      const admit = out.admit(code(m.type), m.length);
      if (admit === Admit.Hold) {
        // Not now (admit() changed nothing): the session holds its input and writes a Flush of its own,
        // so that the server sends what it owes (once per hold: it holds again after each answer).
        if (!flushedForHold) {
          flushedForHold = true;
          pg.input.push(msg('H'));
          trace.log.push('>H(own)');
          check();
          continue;
        }
        const others = choices.filter((c) => c !== 'write');
        if (others.length === 0) {
          trace.deadlock = `${m.type} held forever after [${trace.log.join(' ')}]`;
          break;
        }
        action = others[(schedule[turn++] ?? 0) % others.length]!;
      } else {
        next++;
        if (admit === Admit.Forward) out.sent(code(m.type));
        if (admit === Admit.Forward || admit === Admit.ForwardUnanswered) {
          pg.input.push(m);
          trace.log.push(`>${m.type}${m.outcomes.length ? `(${m.outcomes.join(',')})` : ''}`);
        } else {
          // Dropped by the proxy, or a violation (the proxy would end the client): never reaches the server.
          trace.log.push(`${m.type}:${ADMIT[admit]}`);
        }
      }
    }
    if (action === 'read') {
      pg.step();
    } else if (action === 'receive') {
      const t = pg.wire.shift()!;
      flushedForHold = false;
      trace.log.push(`<${t}`);
      if (!out.received(code(t))) {
        trace.log.push('refused');
        return trace; // pipelined into a COPY: the proxy ends this client
      }
    }
    check();
    if (trace.failures.length > 0) return trace;
  }
  return trace;
}

// ---- generators ----------------------------------------------------------------------

const oneOf = <T>(...weighted: [number, T][]): fc.Arbitrary<T> => fc.oneof(...weighted.map(([weight, v]) => ({ weight, arbitrary: fc.constant(v) })));

const msg = (type: string, outcome?: Outcome, length = 5): ClientMsg => ({ type, outcomes: outcome ? [outcome] : [], length });

const statementOutcome = oneOf<Outcome>([6, 'ok'], [2, 'error'], [3, 'copyIn'], [1, 'copyOut'], [1, 'empty']);

const clientMsg: fc.Arbitrary<ClientMsg> = fc.oneof(
  { weight: 3, arbitrary: fc.array(statementOutcome, { minLength: 1, maxLength: 3 }).map((outcomes) => ({ type: 'Q', outcomes, length: 20 })) },
  { weight: 2, arbitrary: oneOf<Outcome>([5, 'ok'], [1, 'error']).map((o) => ({ type: 'P', outcomes: [o], length: 20 })) },
  { weight: 2, arbitrary: oneOf<Outcome>([5, 'ok'], [1, 'error']).map((o) => ({ type: 'B', outcomes: [o], length: 14 })) },
  { weight: 1, arbitrary: oneOf<Outcome>([3, 'ok'], [2, 'noData'], [1, 'error']).map((o) => ({ type: 'D', outcomes: [o], length: 7 })) },
  { weight: 3, arbitrary: oneOf<Outcome>([4, 'ok'], [2, 'error'], [3, 'copyIn'], [1, 'copyOut'], [1, 'empty'], [1, 'suspend']).map((o) => ({ type: 'E', outcomes: [o], length: 10 })) },
  { weight: 1, arbitrary: fc.constant(msg('C', 'ok', 7)) },
  { weight: 4, arbitrary: oneOf<Outcome>([6, 'ok'], [1, 'error']).map((o) => ({ type: 'S', outcomes: [o], length: 5 })) },
  { weight: 1, arbitrary: fc.constant(msg('H')) },
  { weight: 1, arbitrary: oneOf<Outcome>([3, 'ok'], [1, 'error']).map((o) => ({ type: 'F', outcomes: [o], length: 20 })) },
  { weight: 3, arbitrary: oneOf<Outcome>([5, 'ok'], [1, 'error']).map((o) => ({ type: 'd', outcomes: [o], length: 12 })) },
  { weight: 2, arbitrary: oneOf<Outcome>([5, 'ok'], [1, 'error']).map((o) => ({ type: 'c', outcomes: [o], length: 5 })) },
  { weight: 1, arbitrary: fc.constant(msg('f', 'error', 10)) },
  // Malformed or unknown: admit() must refuse them, so they never reach the server.
  { weight: 1, arbitrary: fc.constantFrom(msg('S', undefined, 6), msg('H', undefined, 7), msg('Z', undefined, 6), msg('p', undefined, 9)) },
);

/** What libpq writes for COPY FROM STDIN by Execute: P/B/D/E/S, then (after CopyInResponse) CopyData, CopyDone or CopyFail, Sync. */
const libpqCopy: fc.Arbitrary<ClientMsg[]> = fc
  .tuple(fc.nat(3), oneOf<Outcome>([4, 'ok'], [1, 'error']), fc.boolean(), fc.boolean(), fc.nat(3))
  .map(([rows, end, fail, flush, last]) => [
    msg('P', 'ok', 20),
    msg('B', 'ok', 14),
    msg('D', 'noData', 7),
    msg('E', 'copyIn', 10),
    msg('S', 'ok'),
    ...Array.from({ length: rows }, () => msg('d', 'ok', 12)),
    fail ? msg('f', 'error', 10) : msg('c', end),
    ...(flush ? [msg('H')] : []),
    ...(last > 0 ? [msg('S', 'ok')] : []), // sometimes the client stops before its last Sync
  ]);

/** A failing extended message followed by a Flush, so that its error can arrive before what follows is written. */
const failedAndFlushed: fc.Arbitrary<ClientMsg[]> = fc.constantFrom('P', 'B', 'E').map((t) => [msg(t, 'error', 12), msg('H')]);

const runs: fc.Arbitrary<Run> = fc.record({
  msgs: fc
    .array(fc.oneof({ weight: 8, arbitrary: clientMsg.map((m) => [m]) }, { weight: 1, arbitrary: libpqCopy }, { weight: 1, arbitrary: failedAndFlushed }), { maxLength: 16 })
    .map((parts) => parts.flat()),
  schedule: fc.array(fc.nat(5), { maxLength: 150 }),
});

const show = (r: Run): string => r.msgs.map((m) => `${m.type}${m.outcomes.length ? `(${m.outcomes.join(',')})` : ''}${m.length !== 5 && 'SH'.includes(m.type) ? `[len ${m.length}]` : ''}`).join(' ');

const NUM_RUNS = Number(process.env.OUTSTANDING_RUNS ?? 3000);

describe('Outstanding against a simulated PostgreSQL backend', () => {
  it('the simulator itself: libpq COPY by Execute and the issue 8 sequence', () => {
    const pg = new Backend();
    pg.input.push({ type: 'P', outcomes: ['ok'], length: 20 }, { type: 'B', outcomes: ['ok'], length: 14 }, { type: 'E', outcomes: ['copyIn'], length: 10 }, { type: 'S', outcomes: ['ok'], length: 5 });
    while (pg.input.length) pg.step();
    expect(pg.wire).toEqual(['1', '2', 'G']);
    expect(pg.futureReady()).toBe(0);
    pg.input.push({ type: 'S', outcomes: ['ok'], length: 5 }, { type: 'c', outcomes: ['ok'], length: 5 });
    while (pg.input.length) pg.step();
    expect(pg.wire.join('')).toBe('12G');
    expect(pg.unflushed).toEqual(['C']);
    expect(pg.xactOpen).toBe(true); // the COPY ended, its implicit transaction waits for a Sync
    expect(pg.idle).toBe(false);
  });

  it('never settled while PostgreSQL owes an answer, is in COPY, skips to Sync or has an implicit transaction open; never fewer ReadyForQuery counted than will come', () => {
    fc.assert(
      fc.property(runs, (run) => {
        const trace = drive(run);
        const safety = trace.failures.filter((f) => f.startsWith('settled while') || f.startsWith('syncPoints'));
        if (safety.length > 0) throw new Error(`${safety[0]}\n  client: ${show(run)}`);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('at rest, syncPoints, copyIn and settled are exactly what PostgreSQL will still do', () => {
    fc.assert(
      fc.property(runs, (run) => {
        const trace = drive(run);
        if (trace.failures.length > 0) throw new Error(`${trace.failures[0]}\n  client: ${show(run)}`);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('a held message is always released: with the Flush the session writes when it holds, the answer it waits for comes', () => {
    fc.assert(
      fc.property(runs, (run) => {
        const trace = drive(run);
        if (trace.deadlock) throw new Error(`${trace.deadlock}\n  client: ${show(run)}`);
      }),
      { numRuns: NUM_RUNS },
    );
  });
});
