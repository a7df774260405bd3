// Encoders for the result sets the admin console sends: RowDescription,
// DataRow, CommandComplete, EmptyQueryResponse, all in text format.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
// These run per admin command, never on the relay's path.

/** Column type OIDs as PgBouncer declares them; values always go as text. */
export const ColumnType = { Text: 25, Int8: 20, Timestamp: 1114 } as const;
export type ColumnType = (typeof ColumnType)[keyof typeof ColumnType];

export interface Column {
  name: string;
  type: ColumnType;
}

export type Cell = string | number | null;

function message(type: string, body: Buffer): Buffer {
  const head = Buffer.allocUnsafe(5);
  head[0] = type.charCodeAt(0);
  head.writeInt32BE(4 + body.length, 1); // length counts itself, not the type byte
  return Buffer.concat([head, body]);
}

const TYPE_LENGTH: Record<ColumnType, number> = { [ColumnType.Text]: -1, [ColumnType.Int8]: 8, [ColumnType.Timestamp]: 8 };

/** RowDescription (T): per field its name, table OID and column 0, type OID, type length, typmod -1, format 0 (text). */
export function rowDescription(columns: readonly Column[]): Buffer {
  const parts: Buffer[] = [int16(columns.length)];
  for (const c of columns) {
    const meta = Buffer.alloc(18);
    meta.writeInt32BE(0, 0);
    meta.writeInt16BE(0, 4);
    meta.writeInt32BE(c.type, 6);
    meta.writeInt16BE(TYPE_LENGTH[c.type], 10);
    meta.writeInt32BE(-1, 12);
    meta.writeInt16BE(0, 16);
    parts.push(Buffer.from(`${c.name}\0`, 'utf8'), meta);
  }
  return message('T', Buffer.concat(parts));
}

/** DataRow (D): per column an Int32 length (-1 for NULL) and the text bytes. */
export function dataRow(cells: readonly Cell[]): Buffer {
  const parts: Buffer[] = [int16(cells.length)];
  for (const cell of cells) {
    if (cell === null) {
      parts.push(int32(-1));
      continue;
    }
    const text = Buffer.from(String(cell), 'utf8');
    parts.push(int32(text.length), text);
  }
  return message('D', Buffer.concat(parts));
}

/** CommandComplete (C) with its tag, e.g. "SHOW". */
export const commandComplete = (tag: string): Buffer => message('C', Buffer.from(`${tag}\0`, 'utf8'));

/** EmptyQueryResponse (I): the answer to an empty query string. */
export const emptyQueryResponse = (): Buffer => message('I', Buffer.alloc(0));

/** A whole result set: description, rows, and CommandComplete "SHOW" (PgBouncer's tag). */
export function resultSet(columns: readonly Column[], rows: readonly (readonly Cell[])[]): Buffer {
  return Buffer.concat([rowDescription(columns), ...rows.map(dataRow), commandComplete('SHOW')]);
}

/** Epoch milliseconds as a timestamp literal (UTC), as PgBouncer shows connect_time. */
export function timestamp(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
}

function int16(n: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeInt16BE(n);
  return b;
}

function int32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n);
  return b;
}
