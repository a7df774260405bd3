// Startup parameters (src/client/parameters.ts): which the proxy tracks, skips,
// ignores or refuses, how `options` is read, and the SET statements that re-apply them.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { ParameterPolicy, TRACKED_PARAMETERS, parameterSyncSql } from '../../../src/client/parameters.js';
import { PgError } from '../../../src/protocol/pg-error.js';

const policy = new ParameterPolicy([], ['extra_float_digits']);

/** fromStartup, expecting a Map. */
function wanted(p: ParameterPolicy, params: ReadonlyArray<readonly [string, string]>): Map<string, string> {
  const got = p.fromStartup(new Map(params));
  if (got instanceof PgError) throw new Error(`unexpected PgError: ${got.message}`);
  return got;
}

/** fromStartup, expecting a PgError. */
function refused(p: ParameterPolicy, params: ReadonlyArray<readonly [string, string]>): PgError {
  const got = p.fromStartup(new Map(params));
  if (!(got instanceof PgError)) throw new Error(`expected a PgError, got ${JSON.stringify([...got])}`);
  return got;
}

// Tracked parameters pass with the server's spelling; login keys and ignored ones are dropped.
describe('ParameterPolicy.fromStartup', () => {
  it('passes tracked parameters through under their canonical names, in order', () => {
    const got = wanted(policy, [
      ['user', 'alice'],
      ['database', 'app'],
      ['datestyle', 'ISO, MDY'],
      ['TIMEZONE', 'UTC'],
      ['Application_Name', 'psql'],
      ['client_encoding', 'UTF8'],
    ]);
    expect([...got]).toEqual([
      ['DateStyle', 'ISO, MDY'],
      ['TimeZone', 'UTC'],
      ['application_name', 'psql'],
      ['client_encoding', 'UTF8'],
    ]);
  });

  it('knows every parameter PostgreSQL reports that it tracks', () => {
    for (const name of TRACKED_PARAMETERS) {
      expect(policy.canonical(name.toUpperCase())).toBe(name);
      expect([...wanted(policy, [[name.toLowerCase(), 'v']])]).toEqual([[name, 'v']]);
    }
  });

  it('skips user, database and replication whatever their case', () => {
    expect(wanted(policy, [['USER', 'u'], ['Database', 'd'], ['replication', 'database']]).size).toBe(0);
  });

  it('drops ignore_startup_parameters, case-insensitively', () => {
    expect(wanted(policy, [['extra_float_digits', '3'], ['Extra_Float_Digits', '2'], ['TimeZone', 'UTC']])).toEqual(new Map([['TimeZone', 'UTC']]));
  });

  it('refuses an unknown parameter with 08P01 and the name as the client sent it', () => {
    const err = refused(policy, [['user', 'u'], ['Work_Mem', '64MB']]);
    expect(err.code).toBe('08P01');
    expect(err.severity).toBe('FATAL');
    expect(err.message).toBe('unsupported startup parameter: Work_Mem');
    expect(err.hint).toContain('ignore_startup_parameters');
  });

  it('tracks track_extra_parameters, and drops names that are not identifiers', () => {
    const p = new ParameterPolicy(['work_mem', 'myapp.tenant', 'bad name', "x';--"], []);
    expect([...wanted(p, [['WORK_MEM', '64MB'], ['myapp.tenant', '7']])]).toEqual([
      ['work_mem', '64MB'],
      ['myapp.tenant', '7'],
    ]);
    expect(refused(p, [['bad name', 'x']]).message).toBe('unsupported startup parameter: bad name');
    expect(p.canonical("x';--")).toBeUndefined();
  });
});

// `options` is read like PostgreSQL reads it: -c name=value, -cname=value, --name=value, backslash escapes.
describe('ParameterPolicy: options', () => {
  const opts = (options: string): Map<string, string> => wanted(policy, [['options', options]]);

  it('reads -c name=value, keeping commas in the value', () => {
    expect(opts('-c search_path=a,b')).toEqual(new Map([['search_path', 'a,b']]));
  });

  it('reads -cname=value', () => {
    expect(opts('-csearch_path=x')).toEqual(new Map([['search_path', 'x']]));
  });

  it('reads --name=value with dashes in the name as underscores', () => {
    expect(opts('--application-name=foo')).toEqual(new Map([['application_name', 'foo']]));
  });

  it('un-escapes backslash-escaped spaces and backslashes', () => {
    expect(opts(String.raw`-c application_name=my\ app\ name`)).toEqual(new Map([['application_name', 'my app name']]));
    expect(opts(String.raw`-c application_name=back\\slash`)).toEqual(new Map([['application_name', String.raw`back\slash`]]));
  });

  it('reads several settings separated by runs of spaces and tabs, with canonical names', () => {
    expect([...opts('  -c datestyle=ISO\t--timezone=UTC   -csearch_path=s1  ')]).toEqual([
      ['DateStyle', 'ISO'],
      ['TimeZone', 'UTC'],
      ['search_path', 's1'],
    ]);
  });

  it('accepts an empty value and an empty options string', () => {
    expect(opts('-c search_path=')).toEqual(new Map([['search_path', '']]));
    expect(opts('')).toEqual(new Map());
  });

  it('drops ignored parameters set through options', () => {
    expect(opts('-c extra_float_digits=3 -c TimeZone=UTC')).toEqual(new Map([['TimeZone', 'UTC']]));
  });

  it('refuses an untracked parameter in options, naming it', () => {
    const err = refused(policy, [['options', '-c work_mem=64MB']]);
    expect(err.code).toBe('08P01');
    expect(err.message).toBe('unsupported startup parameter: options (work_mem)');
  });

  it.each(['-x', '-c', '-c =x', 'search_path=x', '--=x', '-c search_path'])('refuses the malformed options %j, quoting them', (options) => {
    const err = refused(policy, [['options', options]]);
    expect(err.code).toBe('08P01');
    expect(err.message).toBe(`unsupported startup parameter: options (${options})`);
  });

  // PostgreSQL applies `options` first and the packet's own parameters after it
  // (process_startup_options in postinit.c), so an explicit parameter wins whatever
  // the packet order. pgjdbc sends TimeZone explicitly and `options` later.
  it('lets an explicit parameter win over the same setting in options, whatever the order', () => {
    const got = wanted(policy, [
      ['TimeZone', 'Europe/Paris'],
      ['options', '-c TimeZone=UTC'],
    ]);
    expect(got.get('TimeZone')).toBe('Europe/Paris');
  });
});

/** Reads back an E'...' literal the way PostgreSQL's lexer does (only \\ and '' can occur here). */
function unquoteE(literal: string): string {
  expect(literal.startsWith("E'") && literal.endsWith("'")).toBe(true);
  const inner = literal.slice(2, -1);
  let out = '';
  for (let i = 0; i < inner.length; i++) {
    const c = inner[i]!;
    if (c === '\\' || c === "'") {
      expect(inner[i + 1]).toBe(c); // a lone quote would end the literal; a lone backslash would escape
      i++;
    }
    out += c;
  }
  return out;
}

// Only differing values are SET, as E'' literals that read back to exactly the value.
describe('parameterSyncSql', () => {
  it('emits nothing when the server already has every wanted value', () => {
    const w = new Map([['DateStyle', 'ISO, MDY'], ['TimeZone', 'UTC']]);
    expect(parameterSyncSql(w, new Map([...w, ['server_version', '16']]))).toBe('');
    expect(parameterSyncSql(new Map(), new Map([['TimeZone', 'UTC']]))).toBe('');
  });

  it('SETs only the values that differ or that the server lacks, in wanted order', () => {
    const w = new Map([['DateStyle', 'ISO, MDY'], ['TimeZone', 'UTC'], ['application_name', 'app']]);
    const server = new Map([['DateStyle', 'ISO, MDY'], ['TimeZone', 'Europe/Paris']]);
    expect(parameterSyncSql(w, server)).toBe("SELECT pg_catalog.set_config(E'TimeZone', E'UTC', false), pg_catalog.set_config(E'application_name', E'app', false)");
  });

  it("doubles quotes and backslashes in the value", () => {
    const value = String.raw`it's a \ test \\ '' end`;
    const sql = parameterSyncSql(new Map([['application_name', value]]), new Map());
    expect(sql).toBe(String.raw`SELECT pg_catalog.set_config(E'application_name', E'it''s a \\ test \\\\ '''' end', false)`);
  });

  it('reads back to the exact value for any string (no way out of the literal)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }).filter((s) => !s.includes('\0')), (value) => {
        const sql = parameterSyncSql(new Map([['application_name', value]]), new Map());
        const prefix = "SELECT pg_catalog.set_config(E'application_name', ";
        const suffix = ', false)';
        expect(sql.startsWith(prefix) && sql.endsWith(suffix)).toBe(true);
        expect(unquoteE(sql.slice(prefix.length, -suffix.length))).toBe(value);
      }),
      { numRuns: 500 },
    );
  });

  // search_path is a GUC_LIST_QUOTE setting: `SET search_path = 'a,b'` makes ONE schema
  // named "a,b" (PostgreSQL 15 shows `"a,b"`), unlike `-c search_path=a,b` which gives `a, b`.
  // A list value needs `SET search_path TO a, b` per element or set_config('search_path', $1, false).
  it('does not turn a search_path list into a single quoted schema name', () => {
    const sql = parameterSyncSql(new Map([['search_path', 'a,b']]), new Map());
    expect(sql).not.toBe("SET search_path = E'a,b';");
    expect(sql).not.toMatch(/search_path = E'a,b'/);
  });
});
