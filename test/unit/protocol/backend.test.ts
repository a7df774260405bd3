// Backend message encoders (src/protocol/backend.ts, pg-error.ts): decoded by hand
// against the protocol-message-formats layout, then cross-checked with node-postgres's parser.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
import { describe, it, expect } from 'vitest';
import { PassThrough } from 'node:stream';
import { parse } from 'pg-protocol';
import {
  authenticationMd5,
  authenticationOk,
  authenticationSasl,
  authenticationSaslContinue,
  authenticationSaslFinal,
  backendKeyData,
  commandComplete,
  dataRow,
  emptyQueryResponse,
  negotiateProtocolVersion,
  noticeMessage,
  parameterStatus,
  readyForQuery,
  rowDescription,
} from '../../../src/protocol/backend.js';
import { PgError, SqlState, fatal, passwordFailed } from '../../../src/protocol/pg-error.js';

type Parsed = Parameters<Parameters<typeof parse>[1]>[0] & Record<string, unknown>;

/** Runs bytes through pg-protocol's own parser, written `chunk` bytes at a time. */
async function pgParse(bytes: Buffer, chunk = bytes.length || 1): Promise<Parsed[]> {
  const stream = new PassThrough();
  const out: Parsed[] = [];
  const done = parse(stream, (m) => out.push(m as Parsed));
  for (let i = 0; i < bytes.length; i += chunk) stream.write(bytes.subarray(i, i + chunk));
  stream.end();
  await done;
  return out;
}

/** Splits a message into its type, checked length and body. */
function open(msg: Buffer): { type: string; body: Buffer } {
  expect(msg.length).toBeGreaterThanOrEqual(5);
  expect(msg.readInt32BE(1)).toBe(msg.length - 1); // length counts itself, not the type byte
  return { type: String.fromCharCode(msg[0]!), body: msg.subarray(5) };
}

/** Reads NUL-terminated strings until the buffer ends; fails on a missing final NUL. */
function cstrings(b: Buffer): string[] {
  expect(b.length === 0 || b[b.length - 1] === 0).toBe(true);
  return b.length === 0 ? [] : b.subarray(0, -1).toString('utf8').split('\0');
}

// Authentication request messages: 'R', Int32 length, Int32 code, code-specific data.
describe('backend: Authentication*', () => {
  it('AuthenticationOk is R, length 8, code 0', async () => {
    expect([...authenticationOk()]).toEqual([0x52, 0, 0, 0, 8, 0, 0, 0, 0]);
    expect(await pgParse(authenticationOk())).toMatchObject([{ name: 'authenticationOk', length: 8 }]);
  });

  it('AuthenticationMD5Password is R, length 12, code 5, then the 4-byte salt', async () => {
    const salt = Buffer.from([0xde, 0xad, 0xbe, 0xef]);
    const msg = authenticationMd5(salt);
    const { type, body } = open(msg);
    expect(type).toBe('R');
    expect(msg.readInt32BE(1)).toBe(12);
    expect(body.readInt32BE(0)).toBe(5);
    expect(body.subarray(4)).toEqual(salt);
    const [m] = await pgParse(msg);
    expect(m?.name).toBe('authenticationMD5Password');
    expect(m?.salt).toEqual(salt);
  });

  it('AuthenticationSASL is code 10, then each mechanism NUL-terminated, then an empty name (a double NUL)', async () => {
    const msg = authenticationSasl(['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256']);
    const { type, body } = open(msg);
    expect(type).toBe('R');
    expect(body.readInt32BE(0)).toBe(10);
    expect(body.subarray(4).toString('latin1')).toBe('SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0');
    expect(body.subarray(-2)).toEqual(Buffer.from([0, 0]));
    const [m] = await pgParse(msg);
    expect(m).toMatchObject({ name: 'authenticationSASL', mechanisms: ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256'] });
  });

  it('AuthenticationSASL with one mechanism', async () => {
    const msg = authenticationSasl(['SCRAM-SHA-256']);
    expect(msg.subarray(9).toString('latin1')).toBe('SCRAM-SHA-256\0\0');
    expect(msg.readInt32BE(1)).toBe(4 + 4 + 'SCRAM-SHA-256'.length + 2);
    expect(await pgParse(msg)).toMatchObject([{ mechanisms: ['SCRAM-SHA-256'] }]);
  });

  it('AuthenticationSASLContinue (11) and SASLFinal (12) carry the SASL data verbatim, unterminated', async () => {
    const first = Buffer.from('r=clientnonceservernonce,s=c2FsdA==,i=4096');
    const final = Buffer.from('v=rmF9pqV8S7suAoZWja4dJRkFsKQ=');
    const cont = authenticationSaslContinue(first);
    const fin = authenticationSaslFinal(final);
    expect(open(cont).body.readInt32BE(0)).toBe(11);
    expect(open(cont).body.subarray(4)).toEqual(first);
    expect(open(fin).body.readInt32BE(0)).toBe(12);
    expect(open(fin).body.subarray(4)).toEqual(final);
    const parsed = await pgParse(Buffer.concat([cont, fin]));
    expect(parsed).toMatchObject([
      { name: 'authenticationSASLContinue', data: first.toString() },
      { name: 'authenticationSASLFinal', data: final.toString() },
    ]);
  });
});

// Session messages: ParameterStatus, BackendKeyData, ReadyForQuery, NegotiateProtocolVersion.
describe('backend: session messages', () => {
  it('ParameterStatus is S, name NUL, value NUL, with the length in UTF-8 bytes', async () => {
    const value = 'café ☕ 日本 𝄞';
    const msg = parameterStatus('application_name', value);
    const { type, body } = open(msg);
    expect(type).toBe('S');
    expect(body.length).toBe('application_name'.length + 1 + Buffer.byteLength(value) + 1);
    expect(cstrings(body)).toEqual(['application_name', value]);
    const [m] = await pgParse(msg);
    expect(m).toMatchObject({ name: 'parameterStatus', parameterName: 'application_name', parameterValue: value });
  });

  it('ParameterStatus with an empty value', async () => {
    const msg = parameterStatus('search_path', '');
    expect([...msg]).toEqual([0x53, 0, 0, 0, 17, ...Buffer.from('search_path'), 0, 0]);
    expect(await pgParse(msg)).toMatchObject([{ parameterName: 'search_path', parameterValue: '' }]);
  });

  it('BackendKeyData is K, length 12, Int32 process id, Int32 secret (a negative secret stays signed)', async () => {
    const msg = backendKeyData(31337, -559038737);
    const { type, body } = open(msg);
    expect(type).toBe('K');
    expect(msg.readInt32BE(1)).toBe(12);
    expect(body.readInt32BE(0)).toBe(31337);
    expect(body.readInt32BE(4)).toBe(-559038737);
    expect(body.subarray(4)).toEqual(Buffer.from([0xde, 0xad, 0xbe, 0xef]));
    expect(await pgParse(msg)).toMatchObject([{ name: 'backendKeyData', processID: 31337, secretKey: -559038737 }]);
  });

  it.each(['I', 'T', 'E'] as const)('ReadyForQuery is Z, length 5, status %s', async (status) => {
    const msg = readyForQuery(status);
    expect([...msg]).toEqual([0x5a, 0, 0, 0, 5, status.charCodeAt(0)]);
    expect(await pgParse(msg)).toMatchObject([{ name: 'readyForQuery', status }]);
  });

  it('NegotiateProtocolVersion is v, Int32 newest minor, Int32 count, then each option name NUL-terminated', () => {
    const msg = negotiateProtocolVersion(0, ['_pq_.compression', '_pq_.other']);
    const { type, body } = open(msg);
    expect(type).toBe('v');
    expect(body.readInt32BE(0)).toBe(0);
    expect(body.readInt32BE(4)).toBe(2);
    expect(cstrings(body.subarray(8))).toEqual(['_pq_.compression', '_pq_.other']);
  });

  it('NegotiateProtocolVersion with no options is just the two Int32s', () => {
    expect([...negotiateProtocolVersion(0, [])]).toEqual([0x76, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('a whole login reply parses in order with pg-protocol, even fed one byte at a time', async () => {
    const bytes = Buffer.concat([
      authenticationOk(),
      parameterStatus('server_version', '16.4'),
      parameterStatus('TimeZone', 'Europe/Zürich'),
      backendKeyData(7, -1),
      readyForQuery('I'),
    ]);
    const parsed = await pgParse(bytes, 1);
    expect(parsed.map((m) => m.name)).toEqual(['authenticationOk', 'parameterStatus', 'parameterStatus', 'backendKeyData', 'readyForQuery']);
    expect(parsed[2]).toMatchObject({ parameterName: 'TimeZone', parameterValue: 'Europe/Zürich' });
    expect(parsed[3]).toMatchObject({ processID: 7, secretKey: -1 });
  });

  it('NegotiateProtocolVersion has a length that keeps pg-protocol aligned on the next message', async () => {
    // pg-protocol has no decoder for 'v' and reports it as unknown; what matters is the message after it.
    const parsed = await pgParse(Buffer.concat([negotiateProtocolVersion(0, ['_pq_.x']), readyForQuery('I')]), 3);
    expect(parsed).toHaveLength(2);
    expect(parsed[1]).toMatchObject({ name: 'readyForQuery', status: 'I' });
  });
});

/** Field type → value, in order, from an ErrorResponse/NoticeResponse body. */
function fields(body: Buffer): [string, string][] {
  expect(body[body.length - 1]).toBe(0); // the terminator after the last field
  expect(body[body.length - 2]).toBe(0); // ... which ends a NUL-terminated value
  return cstrings(body.subarray(0, -1)).map((f) => [f[0]!, f.slice(1)]);
}

// ErrorResponse/NoticeResponse: (Byte1 field type, String value)*, then a zero byte.
describe('backend: result sets', () => {
  it('RowDescription carries each field as node-postgres reads it, with UTF-8 names', async () => {
    const msg = rowDescription([
      { name: 'aid', typeOid: 23, typeLength: 4, tableOid: 16384, columnNumber: 1 },
      { name: 'größe', typeOid: 25, typeLength: -1 },
    ]);
    const { type, body } = open(msg);
    expect(type).toBe('T');
    expect(body.readInt16BE(0)).toBe(2);
    expect(body.length).toBe(2 + 4 + 18 + Buffer.byteLength('größe') + 1 + 18);
    const [m] = await pgParse(msg, 3);
    expect(m).toMatchObject({
      name: 'rowDescription',
      fieldCount: 2,
      fields: [
        { name: 'aid', tableID: 16384, columnID: 1, dataTypeID: 23, dataTypeSize: 4, dataTypeModifier: -1, format: 'text' },
        { name: 'größe', tableID: 0, columnID: 0, dataTypeID: 25, dataTypeSize: -1, dataTypeModifier: -1, format: 'text' },
      ],
    });
  });

  it('DataRow sends NULL as length -1 and text as its UTF-8 bytes', async () => {
    const msg = dataRow(['42', null, '', 'ümlaut']);
    const { type, body } = open(msg);
    expect(type).toBe('D');
    expect(body.readInt16BE(0)).toBe(4);
    expect(body.readInt32BE(2 + 4 + 2)).toBe(-1);
    expect(await pgParse(msg)).toMatchObject([{ name: 'dataRow', fieldCount: 4, fields: ['42', null, '', 'ümlaut'] }]);
  });

  it('CommandComplete is the tag NUL-terminated; EmptyQueryResponse is I with no body', async () => {
    expect([...commandComplete('SHOW')]).toEqual([0x43, 0, 0, 0, 9, ...Buffer.from('SHOW'), 0]);
    expect(await pgParse(commandComplete('SELECT 100'))).toMatchObject([{ name: 'commandComplete', text: 'SELECT 100' }]);
    expect([...emptyQueryResponse()]).toEqual([0x49, 0, 0, 0, 4]);
    expect(await pgParse(emptyQueryResponse())).toMatchObject([{ name: 'emptyQuery' }]);
  });
});

describe('backend: ErrorResponse', () => {
  it('writes S, V, C, M, D, H in order and a terminating NUL', async () => {
    const msg = noticeMessage('E', {
      severity: 'FATAL',
      code: '28P01',
      message: 'password authentication failed for user "ünï"',
      detail: 'some detail',
      hint: 'a hint',
    });
    const { type, body } = open(msg);
    expect(type).toBe('E');
    expect(fields(body)).toEqual([
      ['S', 'FATAL'],
      ['V', 'FATAL'],
      ['C', '28P01'],
      ['M', 'password authentication failed for user "ünï"'],
      ['D', 'some detail'],
      ['H', 'a hint'],
    ]);
    const [m] = await pgParse(msg);
    expect(m).toBeInstanceOf(Error);
    expect(m).toMatchObject({
      name: 'error',
      severity: 'FATAL',
      code: '28P01',
      message: 'password authentication failed for user "ünï"',
      detail: 'some detail',
      hint: 'a hint',
    });
  });

  it('leaves out D and H when not given', async () => {
    const msg = noticeMessage('E', { severity: 'ERROR', code: '57014', message: 'canceling statement due to user request' });
    expect(fields(open(msg).body).map(([k]) => k)).toEqual(['S', 'V', 'C', 'M']);
    const [m] = await pgParse(msg);
    expect(m).toMatchObject({ severity: 'ERROR', code: '57014', detail: undefined, hint: undefined });
  });

  it('writes NoticeResponse the same way under type N', async () => {
    const msg = noticeMessage('N', { severity: 'WARNING', code: '01000', message: 'careful' });
    expect(open(msg).type).toBe('N');
    expect(await pgParse(msg)).toMatchObject([{ name: 'notice', severity: 'WARNING', code: '01000', message: 'careful' }]);
  });

  it('PgError.toBuffer() is the same ErrorResponse', async () => {
    const err = new PgError({ severity: 'FATAL', code: SqlState.tooManyConnections, message: 'too many', hint: 'wait' });
    expect(err.toBuffer()).toEqual(noticeMessage('E', { severity: 'FATAL', code: '53300', message: 'too many', hint: 'wait' }));
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toBe('too many');
    expect(await pgParse(err.toBuffer())).toMatchObject([{ severity: 'FATAL', code: '53300', message: 'too many', hint: 'wait' }]);
  });

  it('fatal() and passwordFailed() build FATAL errors with PostgreSQL codes and wording', async () => {
    const e = fatal(SqlState.invalidCatalogName, 'database "nope" does not exist', { detail: 'd' });
    expect(e).toMatchObject({ severity: 'FATAL', code: '3D000', message: 'database "nope" does not exist', detail: 'd', hint: undefined });
    const p = passwordFailed('bob');
    expect(fields(open(p.toBuffer()).body)).toEqual([
      ['S', 'FATAL'],
      ['V', 'FATAL'],
      ['C', '28P01'],
      ['M', 'password authentication failed for user "bob"'],
    ]);
    expect(await pgParse(p.toBuffer(), 2)).toMatchObject([{ code: '28P01', message: 'password authentication failed for user "bob"' }]);
  });

  it('every SqlState is a 5-character SQLSTATE', () => {
    for (const code of Object.values(SqlState)) expect(code).toMatch(/^[0-9A-Z]{5}$/);
  });
});

describe('decodeDataRow', () => {
  it('reads back what dataRow() writes, NULL as null, and stops at a truncated body', async () => {
    const { dataRow, decodeDataRow } = await import('../../../src/protocol/backend.js');
    const frame = dataRow(['work_mem', null, 'ümlaut', '']);
    expect(decodeDataRow(frame.subarray(5))).toEqual(['work_mem', null, 'ümlaut', '']);
    expect(decodeDataRow(frame.subarray(5, 12))).toEqual([]); // the first column's bytes are cut short: only whole columns
    expect(decodeDataRow(Buffer.alloc(0))).toEqual([]);
  });
});
