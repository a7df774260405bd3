// What a server still owes: the messages written to it that will get an
// answer, kept in order and popped as the answers arrive, following exactly
// how PostgreSQL's backend reads its input (postgres.c PostgresMain and
// SocketBackend, copyfromparse.c CopyGetData):
//   - each Parse, Bind, Describe, Execute and Close gets one answer; Query,
//     Sync and FunctionCall end with ReadyForQuery;
//   - after an error in an extended-protocol message the server skips every
//     message up to the next Sync, Query and FunctionCall included;
//   - in COPY FROM STDIN the server ignores Sync and Flush, and any other
//     message than CopyData/CopyDone/CopyFail ends the COPY with an error;
//   - outside COPY it ignores CopyData, CopyDone and CopyFail.
// The proxy never forwards what would make this ambiguous, with one exception:
// copy messages are held while a Query or Execute could still turn out to be a
// COPY. The exception is a Sync written during a COPY: ignored if the server
// reads it in COPY, answered if the COPY failed just before. If the COPY then
// fails, nobody can know which; the server stays with its client (whose answers
// stay exactly PostgreSQL's) and is closed, never pooled, when the client is done.
// Only type bytes are looked at; the ring of types is reused, so nothing is
// allocated per message. https://www.postgresql.org/docs/current/protocol-flow.html

const PARSE = 0x50;
const BIND = 0x42;
const DESCRIBE = 0x44;
const EXECUTE = 0x45;
const CLOSE = 0x43;
const SYNC = 0x53;
const QUERY = 0x51;
const FUNCTION_CALL = 0x46;
const FLUSH = 0x48;
const COPY_DATA = 0x64;
const COPY_DONE = 0x63;
const COPY_FAIL = 0x66;

// Server → client types that settle an entry.
const PARSE_COMPLETE = 0x31;
const BIND_COMPLETE = 0x32;
const CLOSE_COMPLETE = 0x33;
const ROW_DESCRIPTION = 0x54;
const NO_DATA = 0x6e;
const COMMAND_COMPLETE = 0x43;
const EMPTY_QUERY = 0x49;
const PORTAL_SUSPENDED = 0x73;
const ERROR_RESPONSE = 0x45;
const READY_FOR_QUERY = 0x5a;
const COPY_IN_RESPONSE = 0x47;
const COPY_BOTH_RESPONSE = 0x57;

/** Messages a client may send after login (StartupMessage-era and SASL types are not among them), by type byte. */
const CLIENT_TYPE = new Uint8Array(256);
for (const t of [PARSE, BIND, DESCRIBE, EXECUTE, CLOSE, SYNC, QUERY, FUNCTION_CALL, FLUSH, COPY_DATA, COPY_DONE, COPY_FAIL, 0x58]) CLIENT_TYPE[t] = 1;

/** What to do with one client message, given what the server owes. */
export const enum Admit {
  /** Write it to the server (and record it with sent()). */
  Forward,
  /** Write it, but it gets no answer: do not record it. */
  ForwardUnanswered,
  /**
   * Not now: wait until the server has answered more (COPY not yet confirmed, or
   * too much outstanding). The server flushes its answers only at Sync or Flush,
   * so the caller sends a Flush meanwhile, or the answer might never come.
   */
  Hold,
  /** Not allowed here: a protocol violation by the client. */
  Violation,
}

/** Entries a client may have outstanding before its input is held (backpressure, not an error). */
export const MAX_OUTSTANDING = 1 << 16;

export class Outstanding {
  private ring = new Uint8Array(16);
  private head = 0;
  /** Entries in the ring. */
  length = 0;
  /** Query, Sync and FunctionCall entries: ReadyForQuery messages still owed. */
  syncPoints = 0;
  /** Query and Execute entries: each could still start a COPY. */
  private copyCandidates = 0;
  /** Extended-protocol messages were written since the last Sync: an implicit transaction may be open. */
  unsynced = false;
  /** An extended-protocol message failed and no Sync was written after it yet: the server discards everything until one. */
  private skipping = false;
  /** A Sync was written during this COPY: if the COPY fails, whether it will be answered is unknowable. */
  private syncInCopy = false;
  /** That happened: what is owed is no longer known, so this server is never settled again. */
  tainted = false;

  /** ReadyForQuery messages may come beyond syncPoints (a Sync written during a COPY, or a failed one). Never settled meanwhile. */
  get uncertain(): boolean {
    return this.syncInCopy || this.tainted;
  }
  /** The server is in COPY FROM STDIN (it sent CopyInResponse) and the client has not sent CopyDone or CopyFail. */
  copyIn = false;
  /** Sync points written, and sync points settled (answered or skipped): batch numbers for ServerStatements. */
  syncSent = 0;
  syncDone = 0;

  /** Nothing owed and no COPY open: the server may be handed to someone else (once its status is idle). */
  get settled(): boolean {
    return this.length === 0 && !this.copyIn && !this.unsynced && !this.skipping && !this.tainted;
  }

  /** Decides about one client message before it is written (the frame's type and total length). */
  admit(type: number, frameLength: number): Admit {
    if (CLIENT_TYPE[type] !== 1) return Admit.Violation;
    if (this.copyIn) {
      if (type === COPY_DATA) return Admit.ForwardUnanswered;
      if (type === COPY_DONE || type === COPY_FAIL) {
        this.copyIn = false;
        return Admit.ForwardUnanswered;
      }
      if (type === FLUSH) return Admit.ForwardUnanswered; // answered by nothing, in COPY or not
      if (type === SYNC) {
        this.syncInCopy = true; // ignored in COPY; see received(ErrorResponse) for the case it is not
        return Admit.ForwardUnanswered;
      }
      return Admit.Violation; // the server would end the COPY with an error at an unknowable point
    }
    if (type === COPY_DATA || type === COPY_DONE || type === COPY_FAIL) {
      // Ignored by a server outside COPY, unless a Query or Execute still running turns out to be one.
      return this.copyCandidates > 0 ? Admit.Hold : Admit.ForwardUnanswered;
    }
    // Fixed-length messages with a body are malformed; the server's handling of them would differ by message.
    if ((type === SYNC || type === FLUSH) && frameLength !== 5) return Admit.Violation;
    if (type === FLUSH) return Admit.ForwardUnanswered;
    if (this.length >= MAX_OUTSTANDING) return Admit.Hold;
    return Admit.Forward;
  }

  /** Records a message written to the server that will be answered (client's or our own). */
  sent(type: number): void {
    if (this.skipping) {
      // Discarded by the server until the Sync that ends the skip: no answer, nothing to record.
      if (type !== SYNC) return;
      this.skipping = false;
    }
    if (this.length === this.ring.length) this.grow();
    this.ring[(this.head + this.length) & (this.ring.length - 1)] = type;
    this.length++;
    if (type === QUERY || type === SYNC || type === FUNCTION_CALL) {
      this.syncPoints++;
      this.syncSent++;
    }
    if (type === QUERY || type === EXECUTE) this.copyCandidates++;
    // Sync ends the implicit transaction of the extended protocol; so do Query and FunctionCall,
    // which run in it and commit it (exec_simple_query's finish_xact_command).
    this.unsynced = !(type === SYNC || type === QUERY || type === FUNCTION_CALL);
  }

  /**
   * Settles what one server message answers. Returns false when the server
   * entered COPY with client messages queued behind the COPY command: the
   * client pipelined into a COPY, which this proxy refuses (ends that client).
   */
  received(type: number): boolean {
    switch (type) {
      case READY_FOR_QUERY:
        // Ends the oldest sync point; anything before it was answered or skipped.
        while (this.length > 0) if (this.isSyncPoint(this.shift())) break;
        return true;
      case PARSE_COMPLETE:
        this.popIf(PARSE);
        return true;
      case BIND_COMPLETE:
        this.popIf(BIND);
        return true;
      case CLOSE_COMPLETE:
        this.popIf(CLOSE);
        return true;
      case ROW_DESCRIPTION:
      case NO_DATA:
        // The end of a Describe's answer (ParameterDescription comes first for a statement).
        // A RowDescription inside a Query's results settles nothing.
        this.popIf(DESCRIBE);
        return true;
      case COMMAND_COMPLETE:
        this.syncInCopy = false; // the COPY (if one ran) succeeded: every Sync written during it was ignored
        this.popIf(EXECUTE);
        return true;
      case EMPTY_QUERY:
      case PORTAL_SUSPENDED:
        this.popIf(EXECUTE); // inside a Query's results they settle nothing: its ReadyForQuery does
        return true;
      case ERROR_RESPONSE:
        this.onError();
        return true;
      case COPY_IN_RESPONSE:
        return this.onCopyIn();
      case COPY_BOTH_RESPONSE:
        return false; // replication's COPY BOTH: never started through this proxy
      default:
        return true; // results, notices, parameter changes, copy-out data: nothing settles
    }
  }

  /** Forgets everything (the server is closed or starts afresh). */
  clear(): void {
    this.head = this.length = this.syncPoints = this.copyCandidates = 0;
    this.copyIn = this.unsynced = this.skipping = this.syncInCopy = this.tainted = false;
  }

  private onError(): void {
    if (this.length === 0) return; // not an answer: a FATAL before the server closes
    // A COPY that fails is over for the server: what the client sends next is read normally (or skipped, below).
    this.copyIn = false;
    if (this.syncInCopy) this.tainted = true; // a Sync written during it may have been read after the failure
    this.syncInCopy = false;
    const head = this.peek();
    // An error in Query, FunctionCall or Sync (a failing COMMIT) is followed by its ReadyForQuery.
    if (head === QUERY || head === FUNCTION_CALL || head === SYNC) return;
    // An extended-protocol message failed (or a COPY started by Execute did): the server skips to the next Sync,
    // including what the client has not written yet.
    while (this.length > 0 && this.peek() !== SYNC) this.shift();
    if (this.length === 0) this.skipping = true;
  }

  private onCopyIn(): boolean {
    // The oldest entry is the Query or Execute that started the COPY. What was sent
    // after it is read in COPY mode: Syncs are ignored; anything else would fail the COPY.
    if (this.length === 0) return false;
    for (let i = 1; i < this.length; i++) if (this.at(i) !== SYNC) return false;
    // Those Syncs are ignored, so they did not end the implicit transaction of a COPY by Execute: another Sync must.
    this.unsynced = this.peek() === EXECUTE;
    while (this.length > 1) this.popTail();
    this.copyIn = true;
    return true;
  }

  private isSyncPoint(type: number): boolean {
    return type === QUERY || type === SYNC || type === FUNCTION_CALL;
  }

  private peek(): number {
    return this.ring[this.head]!;
  }

  private at(i: number): number {
    return this.ring[(this.head + i) & (this.ring.length - 1)]!;
  }

  private popIf(type: number): void {
    if (this.length > 0 && this.peek() === type) this.shift();
  }

  private shift(): number {
    const type = this.ring[this.head]!;
    this.head = (this.head + 1) & (this.ring.length - 1);
    this.length--;
    this.forget(type);
    return type;
  }

  private popTail(): void {
    this.length--;
    this.forget(this.ring[(this.head + this.length) & (this.ring.length - 1)]!);
  }

  private forget(type: number): void {
    if (type === QUERY || type === SYNC || type === FUNCTION_CALL) {
      this.syncPoints--;
      this.syncDone++;
    }
    if (type === QUERY || type === EXECUTE) this.copyCandidates--;
  }

  // Powers of two, so that an index wraps with a mask.
  private grow(): void {
    const bigger = new Uint8Array(this.ring.length * 2);
    for (let i = 0; i < this.length; i++) bigger[i] = this.at(i);
    this.ring = bigger;
    this.head = 0;
  }
}
