// Encoders for the backend messages pg-ingress itself sends to clients.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
// Each returns a fresh Buffer: these run at login and on errors, not per query.

function message(type: string, bodyLength: number): Buffer {
  const buf = Buffer.allocUnsafe(1 + 4 + bodyLength);
  buf[0] = type.charCodeAt(0);
  buf.writeInt32BE(4 + bodyLength, 1); // length counts itself, not the type byte
  return buf;
}

function authentication(code: number, extra: Buffer | null): Buffer {
  const buf = message('R', 4 + (extra?.length ?? 0));
  buf.writeInt32BE(code, 5);
  extra?.copy(buf, 9);
  return buf;
}

/** AuthenticationOk (R, 0). */
export const authenticationOk = (): Buffer => authentication(0, null);

/** AuthenticationMD5Password (R, 5) with a 4-byte salt. */
export const authenticationMd5 = (salt: Buffer): Buffer => authentication(5, salt);

/** AuthenticationSASL (R, 10): mechanism names, each NUL-terminated, then an empty one. */
export function authenticationSasl(mechanisms: readonly string[]): Buffer {
  return authentication(10, Buffer.from(mechanisms.map((m) => `${m}\0`).join('') + '\0', 'utf8'));
}

/** AuthenticationSASLContinue (R, 11). */
export const authenticationSaslContinue = (data: Buffer): Buffer => authentication(11, data);

/** AuthenticationSASLFinal (R, 12). */
export const authenticationSaslFinal = (data: Buffer): Buffer => authentication(12, data);

/** ParameterStatus (S): name and value, NUL-terminated. */
export function parameterStatus(name: string, value: string): Buffer {
  const n = Buffer.byteLength(name);
  const v = Buffer.byteLength(value);
  const buf = message('S', n + 1 + v + 1);
  buf.write(name, 5);
  buf[5 + n] = 0;
  buf.write(value, 6 + n);
  buf[6 + n + v] = 0;
  return buf;
}

/** BackendKeyData (K): the process id and secret a client uses to cancel. */
export function backendKeyData(processId: number, secretKey: number): Buffer {
  const buf = message('K', 8);
  buf.writeInt32BE(processId, 5);
  buf.writeInt32BE(secretKey, 9);
  return buf;
}

/** ReadyForQuery (Z) with transaction status I, T or E. */
export function readyForQuery(status: 'I' | 'T' | 'E'): Buffer {
  const buf = message('Z', 1);
  buf[5] = status.charCodeAt(0);
  return buf;
}

/** NegotiateProtocolVersion (v): newest minor version we support and the options we ignored. */
export function negotiateProtocolVersion(newestMinor: number, unsupported: readonly string[]): Buffer {
  const names = Buffer.from(unsupported.map((o) => `${o}\0`).join(''), 'utf8');
  const buf = message('v', 8 + names.length);
  buf.writeInt32BE(newestMinor, 5);
  buf.writeInt32BE(unsupported.length, 9);
  names.copy(buf, 13);
  return buf;
}

export interface NoticeFields {
  severity: 'ERROR' | 'FATAL' | 'WARNING' | 'NOTICE' | 'LOG';
  code: string;
  message: string;
  detail?: string | undefined;
  hint?: string | undefined;
}

/** ErrorResponse (E) or NoticeResponse (N): typed fields, then a terminating NUL. */
export function noticeMessage(type: 'E' | 'N', f: NoticeFields): Buffer {
  const fields: [string, string][] = [
    ['S', f.severity],
    ['V', f.severity],
    ['C', f.code],
    ['M', f.message],
  ];
  if (f.detail !== undefined) fields.push(['D', f.detail]);
  if (f.hint !== undefined) fields.push(['H', f.hint]);
  const body = Buffer.from(fields.map(([k, v]) => `${k}${v}\0`).join('') + '\0', 'utf8');
  const buf = message(type, body.length);
  body.copy(buf, 5);
  return buf;
}

/** One column of a RowDescription; pg-ingress always sends text format. */
export interface FieldDescription {
  name: string;
  typeOid: number;
  /** pg_type.typlen: -1 for variable length. */
  typeLength: number;
  /** The column's table and attribute number, 0 when it is not a table column. */
  tableOid?: number;
  columnNumber?: number;
}

/** RowDescription (T): per field its name, table OID, column number, type OID, type length, typmod -1, format 0. */
export function rowDescription(fields: readonly FieldDescription[]): Buffer {
  const names = fields.map((f) => Buffer.from(`${f.name}\0`, 'utf8'));
  const buf = message('T', 2 + names.reduce((n, name) => n + name.length + 18, 0));
  let at = buf.writeInt16BE(fields.length, 5);
  fields.forEach((f, i) => {
    at += names[i]!.copy(buf, at);
    at = buf.writeInt32BE(f.tableOid ?? 0, at);
    at = buf.writeInt16BE(f.columnNumber ?? 0, at);
    at = buf.writeInt32BE(f.typeOid, at);
    at = buf.writeInt16BE(f.typeLength, at);
    at = buf.writeInt32BE(-1, at);
    at = buf.writeInt16BE(0, at);
  });
  return buf;
}

/** DataRow (D): per column an Int32 length (-1 for NULL) and the text bytes. */
export function dataRow(values: readonly (string | null)[]): Buffer {
  const texts = values.map((v) => (v === null ? null : Buffer.from(v, 'utf8')));
  const buf = message('D', 2 + texts.reduce((n, t) => n + 4 + (t?.length ?? 0), 0));
  let at = buf.writeInt16BE(values.length, 5);
  for (const t of texts) {
    at = buf.writeInt32BE(t === null ? -1 : t.length, at);
    if (t !== null) at += t.copy(buf, at);
  }
  return buf;
}

/**
 * Reads a DataRow body (after type and length) back into text columns, null
 * for SQL NULL: for the proxy's own small queries, never on the relay path.
 * Int16 column count, then per column Int32 length (-1 for NULL) and bytes.
 */
export function decodeDataRow(body: Buffer): (string | null)[] {
  const count = body.length >= 2 ? body.readInt16BE(0) : 0;
  const columns: (string | null)[] = [];
  let pos = 2;
  for (let i = 0; i < count && pos + 4 <= body.length; i++) {
    const n = body.readInt32BE(pos);
    pos += 4;
    if (n < 0) {
      columns.push(null);
      continue;
    }
    if (pos + n > body.length) break; // cut short: only whole columns
    columns.push(body.toString('utf8', pos, pos + n));
    pos += n;
  }
  return columns;
}

/** CommandComplete (C) with its tag, e.g. "SELECT 1" or "SHOW". */
export function commandComplete(tag: string): Buffer {
  const body = Buffer.from(`${tag}\0`, 'utf8');
  const buf = message('C', body.length);
  body.copy(buf, 5);
  return buf;
}

/** EmptyQueryResponse (I): the answer to an empty query string. */
export const emptyQueryResponse = (): Buffer => message('I', 0);
