// What a server holds of the prepared statements pg-ingress renamed for
// transaction pooling, and what to do with each ParseComplete / CloseComplete
// it will answer: forward it, swallow it (our hidden Parse or Close), or turn a
// CloseComplete into the ParseComplete the client expects (a Parse we skipped
// because the server already had that statement, replaced by a no-op Close so
// the answer still arrives in order).
//
// Answers of one type come back in the order the messages were sent, so one
// FIFO per type is enough. After an error the server skips everything up to
// the next Sync: expectations of a batch that ReadyForQuery ends unanswered are dropped.

export enum Answer {
  Forward,
  Swallow,
  PatchToParseComplete,
}

interface Expectation {
  answer: Answer;
  batch: number;
  /** For a Parse: the statement it creates, forgotten if the Parse fails. */
  statement: string | null;
  /** For a client's own Parse: its name for the statement. */
  client: string | null;
}

export class ServerStatements {
  /** Statement names on the server, least recently used first (Map keeps insertion order). */
  private readonly names = new Map<string, true>();
  private readonly parses: Expectation[] = [];
  private readonly closes: Expectation[] = [];
  private untrusted = false;

  constructor(private readonly max: number) {}

  /** Statements are renamed on this server (transaction pooling with max_prepared_statements > 0). */
  get renaming(): boolean {
    return this.max > 0;
  }

  /**
   * False once a client changed the server's statements by SQL (PREPARE, or a
   * DEALLOCATE of one name: the tags do not say which): what we know of them is
   * a guess from then on, and one of our names may now run another client's
   * SQL. The pool closes such a server when it is given back.
   */
  get trusted(): boolean {
    return !this.untrusted;
  }

  distrust(): void {
    this.untrusted = true;
  }

  get size(): number {
    return this.names.size;
  }

  get idle(): boolean {
    return this.parses.length === 0 && this.closes.length === 0;
  }

  has(name: string): boolean {
    return this.names.has(name);
  }

  /** Marks a statement used; true if the server has it. */
  touch(name: string): boolean {
    if (!this.names.delete(name)) return false;
    this.names.set(name, true);
    return true;
  }

  /** Records a statement about to be prepared; returns the least recently used ones to close to stay under the cap. */
  add(name: string, protect: string | null): string[] {
    this.names.set(name, true);
    const evicted: string[] = [];
    for (const victim of this.names.keys()) {
      if (this.names.size <= this.max) break;
      if (victim === name || victim === protect) continue;
      this.names.delete(victim);
      evicted.push(victim);
    }
    return evicted;
  }

  /**
   * The clients' Parses that failed since the last call, as (client name, server
   * name): the client must forget the name, as PostgreSQL would have no such
   * statement. null when none (the usual case: nothing allocated).
   */
  takeFailedParses(): [string, string][] | null {
    const failed = this.failedParses;
    this.failedParses = null;
    return failed;
  }

  private failedParses: [string, string][] | null = null;

  /** Everything was deallocated (DISCARD ALL, DEALLOCATE ALL). */
  clear(): void {
    this.names.clear();
  }

  /** @param client the client's own name for the statement, when its Parse is the one sent (forgotten if it fails) */
  expectParse(answer: Answer, batch: number, statement: string | null, client: string | null = null): void {
    this.parses.push({ answer, batch, statement, client });
  }

  expectClose(answer: Answer, batch: number): void {
    this.closes.push({ answer, batch, statement: null, client: null });
  }

  onParseComplete(): Answer {
    return this.parses.shift()?.answer ?? Answer.Forward;
  }

  onCloseComplete(): Answer {
    return this.closes.shift()?.answer ?? Answer.Forward;
  }

  /** ReadyForQuery ended batches below `done`: what they did not answer was skipped by the server. */
  onReady(done: number): void {
    while (this.parses.length > 0 && this.parses[0]!.batch < done) {
      const failed = this.parses.shift()!;
      if (failed.statement !== null) this.names.delete(failed.statement);
      if (failed.client !== null && failed.statement !== null) (this.failedParses ??= []).push([failed.client, failed.statement]);
    }
    while (this.closes.length > 0 && this.closes[0]!.batch < done) this.closes.shift();
  }
}
