// Protocol-level named prepared statements under transaction pooling: a
// client's statement names map to server-side names derived from the query
// text, so identical statements from different clients share one server
// statement, and a statement missing on the server the client has now is
// prepared there first by a hidden Parse (as PgBouncer 1.21+ does).
import { createHash } from 'node:crypto';
import * as frontend from '../protocol/frontend.js';
import type { ServerConnection } from '../pool/server.js';
import { Answer } from '../pool/server-statements.js';

const PARSE = 0x50;
const BIND = 0x42;
const DESCRIBE = 0x44;
const CLOSE = 0x43;
const QUERY = 0x51;
const STATEMENT = 0x53; // 'S' in Describe/Close

/** A Close of a name we never prepare: the server answers CloseComplete and does nothing. */
const NOOP_CLOSE = frontend.buildCloseStatement('pgi_noop');
const DEALLOCATE_ALL = /^\s*(?:DEALLOCATE\s+(?:PREPARE\s+)?ALL|DISCARD\s+ALL)\s*;?\s*$/i;

function firstLetterIsD(buf: Buffer, start: number, end: number): boolean {
  for (let i = start + 5; i < end; i++) {
    const c = buf[i]!;
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) continue;
    return c === 0x44 || c === 0x64;
  }
  return false;
}

interface ClientStatement {
  serverName: string;
  /** Query text and parameter types of the Parse, to prepare it on another server. */
  body: Buffer;
}

export class PreparedStatements {
  private readonly byName = new Map<string, ClientStatement>();

  get size(): number {
    return this.byName.size;
  }

  /**
   * Handles one frame bound for `server`: either passes what to send instead
   * of it to `send` (in order) and returns true, or returns false to send it
   * unchanged. No array or closure per message.
   */
  rewrite(type: number, buf: Buffer, start: number, end: number, server: ServerConnection, send: (b: Buffer) => void): boolean {
    switch (type) {
      case PARSE:
        return this.parse(buf, start, end, server, send);
      case BIND: {
        const { name, nameStart, nameEnd } = frontend.bindStatement(buf, start, end);
        return this.useStatement(name, buf, start, end, nameStart, nameEnd, server, send);
      }
      case DESCRIBE: {
        const t = frontend.targetOf(buf, start, end);
        if (t.kind !== STATEMENT) return false;
        return this.useStatement(t.name, buf, start, end, t.nameStart, t.nameEnd, server, send);
      }
      case CLOSE: {
        const t = frontend.targetOf(buf, start, end);
        server.statements.expectClose(Answer.Forward, server.sentBatches);
        if (t.kind !== STATEMENT || t.name === '') return false;
        // Other clients may share the server statement: forget only our name; LRU eviction closes it.
        this.byName.delete(t.name);
        send(NOOP_CLOSE);
        return true;
      }
      case QUERY:
        // Decode the text only when it could be DEALLOCATE/DISCARD (first letter 'D'): no string per query.
        if (firstLetterIsD(buf, start, end) && DEALLOCATE_ALL.test(frontend.queryText(buf, start, end))) {
          this.byName.clear();
          server.statements.clear();
        }
        return false;
      default:
        return false;
    }
  }

  private parse(buf: Buffer, start: number, end: number, server: ServerConnection, send: (b: Buffer) => void): boolean {
    const { name, rest } = frontend.parseName(buf, start, end);
    if (name === '') {
      server.statements.expectParse(Answer.Forward, server.sentBatches, null);
      return false;
    }
    const body = Buffer.from(rest); // kept beyond this chunk
    const serverName = `pgi_${createHash('sha256').update(body).digest('hex').slice(0, 32)}`;
    this.byName.set(name, { serverName, body });
    if (server.statements.touch(serverName)) {
      // The server has it already: a no-op Close answers in the Parse's place, patched to ParseComplete.
      server.statements.expectClose(Answer.PatchToParseComplete, server.sentBatches);
      send(NOOP_CLOSE);
      return true;
    }
    this.evict(server, serverName, send);
    server.statements.expectParse(Answer.Forward, server.sentBatches, serverName);
    send(frontend.buildParse(serverName, body));
    return true;
  }

  private useStatement(name: string, buf: Buffer, start: number, end: number, nameStart: number, nameEnd: number, server: ServerConnection, send: (b: Buffer) => void): boolean {
    if (name === '') return false;
    const statement = this.byName.get(name);
    if (!statement) return false; // unknown here: the server answers "does not exist" itself
    if (!server.statements.touch(statement.serverName)) {
      this.evict(server, statement.serverName, send);
      server.statements.expectParse(Answer.Swallow, server.sentBatches, statement.serverName);
      send(frontend.buildParse(statement.serverName, statement.body));
    }
    send(frontend.replaceName(buf, start, end, nameStart, nameEnd, statement.serverName));
    return true;
  }

  /** Registers `serverName` on the server; sends hidden Closes for what the cap evicts. */
  private evict(server: ServerConnection, serverName: string, send: (b: Buffer) => void): void {
    for (const victim of server.statements.add(serverName, null)) {
      server.statements.expectClose(Answer.Swallow, server.sentBatches);
      send(frontend.buildCloseStatement(victim));
    }
  }
}
