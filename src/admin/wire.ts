// The admin console's result sets: PgBouncer's column types, values as text,
// encoded by protocol/backend. These run per admin command, never on the relay's path.
import * as backend from '../protocol/backend.js';

/** Column type OIDs as PgBouncer declares them; values always go as text. */
export const ColumnType = { Text: 25, Int8: 20, Timestamp: 1114, Bytea: 17 } as const;
export type ColumnType = (typeof ColumnType)[keyof typeof ColumnType];

export interface Column {
  name: string;
  type: ColumnType;
}

export type Cell = string | number | null;

const TYPE_LENGTH: Record<ColumnType, number> = { [ColumnType.Text]: -1, [ColumnType.Int8]: 8, [ColumnType.Timestamp]: 8, [ColumnType.Bytea]: -1 };

/** A whole result set: description, rows, and CommandComplete "SHOW" (PgBouncer's tag). */
export function resultSet(columns: readonly Column[], rows: readonly (readonly Cell[])[]): Buffer {
  return Buffer.concat([
    backend.rowDescription(columns.map((c) => ({ name: c.name, typeOid: c.type, typeLength: TYPE_LENGTH[c.type] }))),
    ...rows.map((row) => backend.dataRow(row.map((cell) => (cell === null ? null : String(cell))))),
    backend.commandComplete('SHOW'),
  ]);
}

/** Epoch milliseconds as a timestamp literal (UTC), as PgBouncer shows connect_time. */
export function timestamp(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
}
