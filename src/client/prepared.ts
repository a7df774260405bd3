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
   * Handles one frame bound for `server`. Returns the buffers to send instead
   * of it, or null to send it unchanged.
   */
  rewrite(type: number, buf: Buffer, start: number, end: number, server: ServerConnection): Buffer[] | null {
    switch (type) {
      case PARSE:
        return this.parse(buf, start, end, server);
      case BIND: {
        const { name, nameStart, nameEnd } = frontend.bindStatement(buf, start, end);
        return this.useStatement(name, buf, start, end, nameStart, nameEnd, server);
      }
      case DESCRIBE: {
        const t = frontend.targetOf(buf, start, end);
        if (t.kind !== STATEMENT) return null;
        return this.useStatement(t.name, buf, start, end, t.nameStart, t.nameEnd, server);
      }
      case CLOSE: {
        const t = frontend.targetOf(buf, start, end);
        server.statements.expectClose(Answer.Forward, server.sentBatches);
        if (t.kind !== STATEMENT || t.name === '') return null;
        // Other clients may share the server statement: forget only our name; LRU eviction closes it.
        this.byName.delete(t.name);
        return [NOOP_CLOSE];
      }
      case QUERY:
        // Decode the text only when it could be DEALLOCATE/DISCARD (first letter 'D'): no string per query.
        if (firstLetterIsD(buf, start, end) && DEALLOCATE_ALL.test(frontend.queryText(buf, start, end))) {
          this.byName.clear();
          server.statements.clear();
        }
        return null;
      default:
        return null;
    }
  }

  private parse(buf: Buffer, start: number, end: number, server: ServerConnection): Buffer[] | null {
    const { name, rest } = frontend.parseName(buf, start, end);
    if (name === '') {
      server.statements.expectParse(Answer.Forward, server.sentBatches, null);
      return null;
    }
    const body = Buffer.from(rest); // kept beyond this chunk
    const serverName = `pgi_${createHash('sha256').update(body).digest('hex').slice(0, 32)}`;
    this.byName.set(name, { serverName, body });
    if (server.statements.touch(serverName)) {
      // The server has it already: a no-op Close answers in the Parse's place, patched to ParseComplete.
      server.statements.expectClose(Answer.PatchToParseComplete, server.sentBatches);
      return [NOOP_CLOSE];
    }
    const out = this.evictions(server, serverName);
    server.statements.expectParse(Answer.Forward, server.sentBatches, serverName);
    out.push(frontend.buildParse(serverName, body));
    return out;
  }

  private useStatement(name: string, buf: Buffer, start: number, end: number, nameStart: number, nameEnd: number, server: ServerConnection): Buffer[] | null {
    if (name === '') return null;
    const statement = this.byName.get(name);
    if (!statement) return null; // unknown here: the server answers "does not exist" itself
    const out: Buffer[] = [];
    if (!server.statements.touch(statement.serverName)) {
      out.push(...this.evictions(server, statement.serverName));
      server.statements.expectParse(Answer.Swallow, server.sentBatches, statement.serverName);
      out.push(frontend.buildParse(statement.serverName, statement.body));
    }
    out.push(frontend.replaceName(buf, start, end, nameStart, nameEnd, statement.serverName));
    return out;
  }

  /** Registers `serverName` on the server; hidden Closes for what the cap evicts. */
  private evictions(server: ServerConnection, serverName: string): Buffer[] {
    const out: Buffer[] = [];
    for (const victim of server.statements.add(serverName, null)) {
      server.statements.expectClose(Answer.Swallow, server.sentBatches);
      out.push(frontend.buildCloseStatement(victim));
    }
    return out;
  }
}
