// Database routing (src/client/router.ts) through a Config built by loadConfig:
// exact entry before '*', the {db} host template and its DNS-label guard, and fallbacks.
import { describe, it, expect } from 'vitest';
import { loadConfig, type Config } from '../../../src/config/index.js';
import { route } from '../../../src/client/router.js';

const config = (databases: Record<string, unknown>, globals: Record<string, unknown> = {}): Config =>
  loadConfig({ file: null, env: {}, overrides: { ...globals, databases } });

// An exact entry wins over '*'; '*' serves any other name as that database.
describe('route: choosing the entry', () => {
  const c = config({
    app: { host: 'app-rw.db.svc', port: 5433, dbname: 'app_prod' },
    '*': { host: 'shared-rw.db.svc' },
  });

  it('uses the exact entry when there is one', () => {
    expect(route(c, 'app')).toMatchObject({ database: 'app', host: 'app-rw.db.svc', port: 5433, dbname: 'app_prod', entry: c.databases.app });
  });

  it("falls back to '*', connecting to the requested name", () => {
    expect(route(c, 'reports')).toMatchObject({ database: 'reports', host: 'shared-rw.db.svc', port: 5432, dbname: 'reports', entry: c.databases['*'] });
  });

  it("returns null without an exact entry or '*'", () => {
    expect(route(config({ app: { host: 'h' } }), 'other')).toBeNull();
    expect(route(config({}), 'app')).toBeNull();
  });

  it('matches names exactly (case-sensitive, as PostgreSQL database names are)', () => {
    expect(route(config({ app: { host: 'h' } }), 'APP')).toBeNull();
  });

  it("routes everything to a '*' entry with a fixed dbname there", () => {
    expect(route(config({ '*': { host: 'h', dbname: 'one' } }), 'anything')).toMatchObject({ database: 'anything', dbname: 'one' });
  });
});

// {db} puts a client-chosen name into a host name, so only plain DNS labels may be substituted.
describe('route: {db} host template', () => {
  const c = config({ '*': { host: '{db}-rw.{db}.svc.cluster.local' } });

  it('substitutes every {db} with the requested name', () => {
    expect(route(c, 'orders')).toMatchObject({ host: 'orders-rw.orders.svc.cluster.local', dbname: 'orders', database: 'orders' });
  });

  it('accepts DNS labels: digits, inner dashes and underscores, 1 and 63 characters', () => {
    for (const name of ['a', '9', 'a-b', 'my_db', 'A1', 'x'.repeat(63)]) expect(route(c, name)?.host).toBe(`${name}-rw.${name}.svc.cluster.local`);
  });

  it.each(['a.b', 'x/y', '-x', 'x-', '_x', '', 'a b', 'a:5432', 'a@b', 'é', 'x'.repeat(64), 'x'.repeat(70), 'a\0b', 'a\nb'])(
    'refuses %j when the host has {db}',
    (name) => {
      expect(route(c, name)).toBeNull();
    },
  );

  it('routes the same names normally when the host has no {db}', () => {
    const plain = config({ '*': { host: 'shared.svc' } });
    for (const name of ['a.b', 'x/y', '-x', 'x'.repeat(70)]) expect(route(plain, name)).toMatchObject({ host: 'shared.svc', dbname: name, database: name });
  });

  it('applies the guard to an exact entry with {db} too', () => {
    const exact = config({ 'a.b': { host: '{db}.svc' }, ok: { host: '{db}.svc' } });
    expect(route(exact, 'a.b')).toBeNull();
    expect(route(exact, 'ok')?.host).toBe('ok.svc');
  });
});

// Per-database settings fall back to the globals; auth_dbname falls back to global, then dbname.
describe('route: fallbacks', () => {
  it('takes pool_mode and pool_size from the entry when set, else from the globals', () => {
    const c = config(
      { own: { host: 'h', pool_mode: 'statement', pool_size: 3 }, '*': { host: 'h' } },
      { pool_mode: 'transaction', default_pool_size: 17 },
    );
    expect(route(c, 'own')).toMatchObject({ poolMode: 'statement', poolSize: 3 });
    expect(route(c, 'other')).toMatchObject({ poolMode: 'transaction', poolSize: 17 });
  });

  it('uses the built-in defaults when nothing is set', () => {
    expect(route(config({ '*': { host: 'h' } }), 'x')).toMatchObject({ poolMode: 'session', poolSize: 20 });
  });

  it('takes auth_dbname from the entry, else the global, else the dbname', () => {
    const dbs = { own: { host: 'h', auth_dbname: 'authdb', dbname: 'real' }, mapped: { host: 'h', dbname: 'real' }, '*': { host: 'h' } };
    const withGlobal = config(dbs, { auth_dbname: 'global_auth' });
    expect(route(withGlobal, 'own')?.authDbname).toBe('authdb');
    expect(route(withGlobal, 'mapped')?.authDbname).toBe('global_auth');
    const without = config(dbs);
    expect(route(without, 'own')?.authDbname).toBe('authdb');
    expect(route(without, 'mapped')?.authDbname).toBe('real');
    expect(route(without, 'anything')?.authDbname).toBe('anything');
  });

  it('accepts DSN-string entries the same way', () => {
    const c = config({ app: 'host=app-rw port=6000 dbname=app_prod pool_mode=transaction pool_size=4 auth_dbname=postgres' });
    expect(route(c, 'app')).toMatchObject({ host: 'app-rw', port: 6000, dbname: 'app_prod', poolMode: 'transaction', poolSize: 4, authDbname: 'postgres' });
  });
});

// A client-sent name never reaches Object.prototype.
describe('route: prototype names', () => {
  const names = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__'];

  it.each(names)('does not route %j without a matching entry or *', (name) => {
    expect(route(config({ app: { host: 'h' } }), name)).toBeNull();
  });

  it.each(names)("routes %j through '*' as an ordinary name", (name) => {
    const c = config({ '*': { host: 'shared.svc' } });
    expect(route(c, name)).toMatchObject({ host: 'shared.svc', dbname: name, database: name, entry: c.databases['*'] });
  });

  it('routes a configured database named constructor to its own entry', () => {
    const c = config({ constructor: { host: 'ctor.svc' }, '*': { host: 'shared.svc' } });
    expect(route(c, 'constructor')).toMatchObject({ host: 'ctor.svc', dbname: 'constructor' });
  });
});
