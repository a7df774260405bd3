// PreparedStatements: a client's named statements renamed to per-process
// salted server names, shared between clients, prepared by a hidden Parse on a
// server that lacks them, evicted with hidden Closes, and bounded per client.
import { createHash } from 'node:crypto';
import { serialize } from 'pg-protocol';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { PreparedStatements, serverStatementName } from '../../../src/client/prepared.js';
import { Answer, ServerStatements } from '../../../src/pool/server-statements.js';
import type { ServerConnection } from '../../../src/pool/server.js';
import { PgError } from '../../../src/protocol/pg-error.js';

/** The two things PreparedStatements reads of a server. */
interface FakeServer {
  statements: ServerStatements;
  sentBatches: number;
}
const fakeServer = (max = 10): FakeServer => ({ statements: new ServerStatements(max), sentBatches: 0 });

interface Sent {
  type: string;
  name: string;
}

/** Decodes what rewrite() sent: the message type and the statement name it carries. */
function decode(b: Buffer): Sent {
  const type = String.fromCharCode(b[0]!);
  let at = 5;
  if (type === 'B') at = b.indexOf(0, 5) + 1; // after the portal name
  if (type === 'C' || type === 'D') at = 6; // after 'S'
  return { type, name: b.toString('utf8', at, b.indexOf(0, at)) };
}

/** Runs one frame through rewrite; returns whether it was replaced and what went instead. */
function run(prepared: PreparedStatements, frame: Buffer, server: FakeServer): { replaced: boolean; sent: Sent[]; raw: Buffer[] } {
  const raw: Buffer[] = [];
  const replaced = prepared.rewrite(frame[0]!, frame, 0, frame.length, server as unknown as ServerConnection, (b) => raw.push(Buffer.from(b)));
  return { replaced, sent: raw.map(decode), raw };
}

const parse = (name: string, text: string, types: number[] = []): Buffer => serialize.parse({ name, text, types });
const bind = (statement: string): Buffer => serialize.bind({ statement, values: [] });
const describeStatement = (name: string): Buffer => serialize.describe({ type: 'S', name });
const closeStatement = (name: string): Buffer => serialize.close({ type: 'S', name });
/** What a Parse keeps: everything after its name (query text and parameter types). */
const bodyOf = (frame: Buffer): Buffer => frame.subarray(frame.indexOf(0, 5) + 1);

const SQL = 'SELECT $1::int AS n';
const NAME = serverStatementName(bodyOf(parse('x', SQL)));

describe('PreparedStatements', () => {
  let server: FakeServer;
  beforeEach(() => {
    server = fakeServer();
  });

  it('renames a Parse to the server name of its body, sending the same query text', () => {
    const client = new PreparedStatements();
    const { replaced, sent, raw } = run(client, parse('s1', SQL, [23]), server);
    expect(replaced).toBe(true);
    expect(sent).toEqual([{ type: 'P', name: serverStatementName(bodyOf(parse('s1', SQL, [23]))) }]);
    expect(sent[0]!.name).toMatch(/^pgi_[0-9a-f]{32}$/);
    expect(bodyOf(raw[0]!)).toEqual(bodyOf(parse('s1', SQL, [23])));
    expect(server.statements.has(sent[0]!.name)).toBe(true);
    expect(server.statements.onParseComplete()).toBe(Answer.Forward);
    // Parameter types are part of the statement: another type list is another statement.
    expect(serverStatementName(bodyOf(parse('s1', SQL, [20])))).not.toBe(sent[0]!.name);
  });

  it('renames Bind and Describe of a known name; leaves unnamed, unknown and portal ones alone', () => {
    const client = new PreparedStatements();
    run(client, parse('s1', SQL), server);
    expect(run(client, bind('s1'), server).sent).toEqual([{ type: 'B', name: NAME }]);
    expect(run(client, describeStatement('s1'), server).sent).toEqual([{ type: 'D', name: NAME }]);
    expect(run(client, bind(''), server).replaced).toBe(false);
    expect(run(client, bind('never_prepared'), server).replaced).toBe(false); // the server says "does not exist" itself
    expect(run(client, serialize.describe({ type: 'P', name: 'portal' }), server).replaced).toBe(false);
    const unnamed = run(client, parse('', 'SELECT 1'), server);
    expect(unnamed.replaced).toBe(false);
    expect(server.statements.onParseComplete()).toBe(Answer.Forward); // the first Parse's
    expect(server.statements.onParseComplete()).toBe(Answer.Forward); // the unnamed one's
  });

  it('identical statements of two clients share one server statement; the second Parse becomes a no-op answered as ParseComplete', () => {
    const alice = new PreparedStatements();
    const bob = new PreparedStatements();
    run(alice, parse('a_name', SQL), server);
    server.statements.onParseComplete();
    const second = run(bob, parse('b_name', SQL), server);
    expect(second.sent).toEqual([{ type: 'C', name: 'pgi_noop' }]);
    expect(server.statements.onCloseComplete()).toBe(Answer.PatchToParseComplete);
    expect(server.statements.size).toBe(1);
    expect(run(bob, bind('b_name'), server).sent).toEqual([{ type: 'B', name: NAME }]);
  });

  it('a statement the current server lacks is prepared there first by a hidden Parse whose answer is swallowed', () => {
    const client = new PreparedStatements();
    run(client, parse('s1', SQL), server);
    const other = fakeServer();
    expect(run(client, bind('s1'), other).sent).toEqual([
      { type: 'P', name: NAME },
      { type: 'B', name: NAME },
    ]);
    expect(other.statements.onParseComplete()).toBe(Answer.Swallow);
    // Prepared there now: the next Bind needs no Parse.
    expect(run(client, bind('s1'), other).sent).toEqual([{ type: 'B', name: NAME }]);
    const third = fakeServer();
    expect(run(client, describeStatement('s1'), third).sent.map((s) => s.type)).toEqual(['P', 'D']);
  });

  it('past the server cap, the least recently used statement is closed by a hidden Close before the new Parse', () => {
    const small = fakeServer(2);
    const client = new PreparedStatements();
    const names = ['SELECT 1', 'SELECT 2', 'SELECT 3'].map((sql, i) => {
      run(client, parse(`s${i}`, sql), small);
      return serverStatementName(bodyOf(parse('', sql)));
    });
    expect(small.statements.size).toBe(2);
    expect(small.statements.has(names[0]!)).toBe(false);
    // s0 is gone from that server: using it prepares it again, evicting s1 (now the oldest).
    expect(run(client, bind('s0'), small).sent).toEqual([
      { type: 'C', name: names[1]! },
      { type: 'P', name: names[0]! },
      { type: 'B', name: names[0]! },
    ]);
    // Answers: three Parses forwarded, then the hidden ones swallowed; the evictions' CloseCompletes swallowed.
    expect([1, 2, 3, 4].map(() => small.statements.onParseComplete())).toEqual([Answer.Forward, Answer.Forward, Answer.Forward, Answer.Swallow]);
    expect([1, 2].map(() => small.statements.onCloseComplete())).toEqual([Answer.Swallow, Answer.Swallow]);
  });

  it('Close forgets only the client name: the server statement stays for the clients that share it', () => {
    const alice = new PreparedStatements();
    const bob = new PreparedStatements();
    run(alice, parse('a', SQL), server);
    run(bob, parse('b', SQL), server);
    const closed = run(alice, closeStatement('a'), server);
    expect(closed.sent).toEqual([{ type: 'C', name: 'pgi_noop' }]);
    expect(alice.size).toBe(0);
    expect(server.statements.has(NAME)).toBe(true);
    expect(run(bob, bind('b'), server).sent).toEqual([{ type: 'B', name: NAME }]);
    expect(run(alice, bind('a'), server).replaced).toBe(false); // alice's name is gone: the server will say so
    // A portal Close passes through, its CloseComplete forwarded.
    expect(run(alice, serialize.close({ type: 'P', name: 'p' }), server).replaced).toBe(false);
  });

  it('a batch that failed forgets the statement on that server, and the next use prepares it again', () => {
    const client = new PreparedStatements();
    run(client, parse('s1', SQL), server); // in batch 0
    server.sentBatches = 1; // the Sync
    server.statements.onReady(1); // ReadyForQuery after an ErrorResponse: no ParseComplete came
    expect(server.statements.has(NAME)).toBe(false);
    expect(run(client, bind('s1'), server).sent.map((s) => s.type)).toEqual(['P', 'B']);
  });

  it('a simple Query is never rewritten: DISCARD ALL in the text changes nothing until the server confirms it', () => {
    const client = new PreparedStatements();
    run(client, parse('s1', SQL), server);
    expect(run(client, serialize.query('select 1; discard all'), server).replaced).toBe(false);
    expect(run(client, serialize.query('DEALLOCATE ALL'), server).replaced).toBe(false);
    expect(client.size).toBe(1);
    expect(server.statements.has(NAME)).toBe(true);
  });

  it('forgetAll() drops every name of the client (the server answered DEALLOCATE ALL or DISCARD ALL)', () => {
    const client = new PreparedStatements();
    run(client, parse('s1', SQL), server);
    run(client, parse('s2', 'SELECT 2'), server);
    expect(client.keptBytes).toBeGreaterThan(0);
    client.forgetAll();
    expect(client.size).toBe(0);
    expect(client.keptBytes).toBe(0);
    expect(run(client, bind('s1'), server).replaced).toBe(false);
  });

  describe('limits per client', () => {
    it('max_client_prepared_statements: a new name past the cap throws FATAL 53400 and sends nothing', () => {
      const client = new PreparedStatements({ maxStatements: 2, maxBytes: 1 << 20 });
      run(client, parse('s1', 'SELECT 1'), server);
      run(client, parse('s2', 'SELECT 2'), server);
      const sent: Buffer[] = [];
      let thrown: unknown;
      try {
        const frame = parse('s3', 'SELECT 3');
        client.rewrite(frame[0]!, frame, 0, frame.length, server as unknown as ServerConnection, (b) => sent.push(b));
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(PgError);
      expect(thrown).toMatchObject({ severity: 'FATAL', code: '53400' });
      expect((thrown as PgError).message).toMatch(/max_client_prepared_statements/);
      expect(sent).toEqual([]);
      expect(client.size).toBe(2);
      // Re-preparing a kept name is no new name; closing one makes room.
      expect(run(client, parse('s2', 'SELECT 22'), server).replaced).toBe(true);
      run(client, closeStatement('s1'), server);
      expect(run(client, parse('s3', 'SELECT 3'), server).replaced).toBe(true);
    });

    it('max_client_prepared_bytes: names and query text past the cap throw FATAL 53400', () => {
      const client = new PreparedStatements({ maxStatements: 1000, maxBytes: 2048 });
      const big = `SELECT '${'x'.repeat(1500)}'`;
      run(client, parse('s1', big), server);
      expect(client.keptBytes).toBe(2 + bodyOf(parse('s1', big)).length);
      expect(() => run(client, parse('s2', big), server)).toThrow(/max_client_prepared_bytes/);
      try {
        run(client, parse('s2', big), server);
      } catch (err) {
        expect(err).toMatchObject({ severity: 'FATAL', code: '53400' });
      }
      // A long name counts too.
      expect(() => run(client, parse('n'.repeat(1000), 'SELECT 1'), server)).toThrow(/max_client_prepared_bytes/);
      // Replacing s1 by a small body frees its bytes.
      run(client, parse('s1', 'SELECT 1'), server);
      expect(run(client, parse('s2', big), server).replaced).toBe(true);
    });
  });

  describe('server names', () => {
    it('are not the plain SHA-256 of the statement, so no client can compute another client\'s name', () => {
      const body = bodyOf(parse('x', SQL));
      const plain = `pgi_${createHash('sha256').update(body).digest('hex').slice(0, 32)}`;
      expect(serverStatementName(body)).not.toBe(plain);
      expect(serverStatementName(body)).toBe(serverStatementName(Buffer.from(body))); // stable within a process
    });

    it('differ between processes (each module instance has its own key)', async () => {
      const body = bodyOf(parse('x', SQL));
      vi.resetModules();
      const fresh = (await import('../../../src/client/prepared.js')) as typeof import('../../../src/client/prepared.js');
      expect(fresh.serverStatementName).not.toBe(serverStatementName);
      expect(fresh.serverStatementName(body)).toMatch(/^pgi_[0-9a-f]{32}$/);
      expect(fresh.serverStatementName(body)).not.toBe(serverStatementName(body));
    });
  });
});
