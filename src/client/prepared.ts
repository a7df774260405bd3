// Protocol-level named prepared statements under transaction pooling: a
// client's statement names map to server-side names derived from the query
// text, so identical statements from different clients share one server
// statement, and a statement missing on the server the client has now is
// prepared there first by a hidden Parse (as PgBouncer 1.21+ does).
//
// Server-side names are an HMAC of the Parse body under a key made at start, so
// they cannot be computed from the SQL text: a client cannot pre-create, with
// SQL `PREPARE pgi_…`, the statement another client's Bind will run.
//
// What a client keeps here is bounded (max_client_prepared_statements and
// max_client_prepared_bytes). What the server confirms decides the rest: the
// session calls forgetAll() at CommandComplete `DEALLOCATE ALL` / `DISCARD ALL`.
import { createHmac, randomBytes } from 'node:crypto';
import * as frontend from '../protocol/frontend.js';
import { fatal, SqlState, type PgError } from '../protocol/pg-error.js';
import type { ServerConnection } from '../pool/server.js';
import { Answer } from '../pool/server-statements.js';

const PARSE = 0x50;
const BIND = 0x42;
const DESCRIBE = 0x44;
const CLOSE = 0x43;
const STATEMENT = 0x53; // 'S' in Describe/Close

/** A Close of a name we never prepare ('noop' is not hex): the server answers CloseComplete and does nothing. */
const NOOP_CLOSE = frontend.buildCloseStatement('pgi_noop');

/** Keys the server-side names; one per process, so that this process's clients still share statements. */
const NAME_KEY = randomBytes(16);

/** The server-side name of a Parse body (query text and parameter types). */
export function serverStatementName(body: Buffer): string {
  return `pgi_${createHmac('sha256', NAME_KEY).update(body).digest('hex').slice(0, 32)}`;
}

export interface PreparedLimits {
  /** Statement names one client may keep (max_client_prepared_statements). */
  maxStatements: number;
  /** Bytes of names and Parse bodies one client may keep (max_client_prepared_bytes). */
  maxBytes: number;
}

/** The configuration's defaults, for a caller that passes none. */
export const DEFAULT_PREPARED_LIMITS: PreparedLimits = { maxStatements: 1000, maxBytes: 4 * 1024 * 1024 };

interface ClientStatement {
  serverName: string;
  /** Query text and parameter types of the Parse, to prepare it on another server. */
  body: Buffer;
}

export class PreparedStatements {
  private readonly byName = new Map<string, ClientStatement>();
  /** Bytes of names and bodies in byName, held against maxBytes. */
  private bytes = 0;

  constructor(private readonly limits: PreparedLimits = DEFAULT_PREPARED_LIMITS) {}

  get size(): number {
    return this.byName.size;
  }

  /** Bytes this client's statements keep (names and Parse bodies). */
  get keptBytes(): number {
    return this.bytes;
  }

  /** The server dropped every statement of the session (DEALLOCATE ALL, DISCARD ALL): so does the client. */
  forgetAll(): void {
    this.byName.clear();
    this.bytes = 0;
  }

  /**
   * Handles one frame bound for `server`: either passes what to send instead
   * of it to `send` (in order) and returns true, or returns false to send it
   * unchanged. No array or closure per message.
   * @throws PgError (FATAL, 53400) when a Parse would pass the client's limits; nothing was sent for it
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
        this.forget(t.name);
        send(NOOP_CLOSE);
        return true;
      }
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
    this.admit(name, rest.length);
    const body = Buffer.from(rest); // kept beyond this chunk
    const serverName = serverStatementName(body);
    this.forget(name);
    this.byName.set(name, { serverName, body });
    this.bytes += name.length + body.length;
    if (server.statements.touch(serverName)) {
      // The server has it already: a no-op Close answers in the Parse's place, patched to ParseComplete.
      server.statements.expectClose(Answer.PatchToParseComplete, server.sentBatches);
      send(NOOP_CLOSE);
      return true;
    }
    this.evict(server, serverName, send);
    server.statements.expectParse(Answer.Forward, server.sentBatches, serverName, name);
    send(frontend.buildParse(serverName, body));
    return true;
  }

  /** The server refused the client's Parse of `name`: it has no such statement now, as in PostgreSQL. */
  forgetFailed(name: string, serverName: string): void {
    if (this.byName.get(name)?.serverName === serverName) this.forget(name);
  }

  /** Throws if keeping `name` with a body of `bodyLength` bytes would pass a limit. */
  private admit(name: string, bodyLength: number): void {
    const old = this.byName.get(name);
    if (!old && this.byName.size >= this.limits.maxStatements) {
      throw limitReached('max_client_prepared_statements', `too many prepared statements: this client keeps ${this.byName.size}, the limit set by max_client_prepared_statements`);
    }
    const after = this.bytes - (old ? name.length + old.body.length : 0) + name.length + bodyLength;
    if (after > this.limits.maxBytes) {
      throw limitReached('max_client_prepared_bytes', `prepared statements too large: this client's would keep ${after} bytes of names and query text, over max_client_prepared_bytes (${this.limits.maxBytes})`);
    }
  }

  private forget(name: string): void {
    const old = this.byName.get(name);
    if (!old) return;
    this.byName.delete(name);
    this.bytes -= name.length + old.body.length;
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

function limitReached(setting: string, message: string): PgError {
  return fatal(SqlState.configurationLimitExceeded, message, {
    hint: `close prepared statements the client no longer needs, or raise ${setting}`,
  });
}
