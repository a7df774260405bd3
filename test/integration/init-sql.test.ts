// `pg-ingress init-sql`, as a user runs it: the real command's output piped
// into psql as the superuser (or, for --cnpg, each postInitApplicationSQL item
// on its own, as CloudNativePG runs them), against the test cluster. Applying
// it twice changes nothing in the catalogs; --exclude-superusers and
// --database do what they say, observed in PostgreSQL.
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { parse } from 'yaml';
import { BIN } from '../harness/cli.js';
import { adminSql, USERS } from '../harness/postgres.js';
import { testEnv } from '../harness/proxy.js';

const run = promisify(execFile);

async function initSql(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [BIN, 'init-sql', ...args]);
  return stdout;
}

/** `… | psql -v ON_ERROR_STOP=1` as the superuser over the socket, as the README says. */
async function applyScript(sql: string, database: string): Promise<void> {
  const { cluster } = testEnv();
  const child = spawn('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', cluster.socketDir, '-p', String(cluster.port), '-U', USERS.superuser.name, '-d', database, '-f', '-']);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.end(sql);
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  // NOTICEs (e.g. "schema already exists, skipping") are fine; an ERROR stops psql with 3.
  expect({ code, errors: stderr.split('\n').filter((l) => /ERROR/.test(l)) }).toEqual({ code: 0, errors: [] });
}

/** Everything init-sql touches, by oid too: a second run that dropped and recreated something would show. */
async function catalogSnapshot(database: string, roles: string[]): Promise<unknown> {
  const names = `ARRAY[${roles.map((r) => `'${r}'`).join(',')}]::name[]`;
  const json = await adminSql(
    { ...testEnv().cluster },
    `SELECT json_build_object(
      'functions', (SELECT json_agg(json_build_array(p.oid, p.proname, pg_get_functiondef(p.oid), p.proowner::regrole::text, p.proacl::text, p.prosecdef, p.proconfig) ORDER BY p.oid)
                    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'pgbouncer'),
      'schema', (SELECT json_agg(json_build_array(oid, nspname, nspowner::regrole::text, nspacl::text)) FROM pg_namespace WHERE nspname = 'pgbouncer'),
      'roles', (SELECT json_agg(json_build_array(oid, rolname, rolsuper, rolcanlogin, rolinherit, rolpassword) ORDER BY rolname) FROM pg_authid WHERE rolname = ANY (${names})),
      'members', (SELECT json_agg(json_build_array(r.rolname, m.rolname, am.admin_option, am.grantor::regrole::text) ORDER BY r.rolname, m.rolname)
                  FROM pg_auth_members am JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
                  WHERE r.rolname = ANY (${names}) OR m.rolname = ANY (${names})),
      'database', (SELECT datacl::text FROM pg_database WHERE datname = current_database()))`,
    database,
  );
  return JSON.parse(json);
}

/** How many rows get_auth gives for `user`, called as the auth user (through its role's grants). */
async function lookupRows(database: string, authUser: string, user: string): Promise<number> {
  return Number(await adminSql(testEnv().cluster, `SET ROLE ${authUser}; SELECT count(*) FROM pgbouncer.get_auth('${user}') WHERE password IS NOT NULL`, database));
}

describe('pg-ingress init-sql against PostgreSQL', () => {
  it('applied twice with every option, succeeds both times and the second changes nothing', async () => {
    const roles = ['initsql_twice_user', 'initsql_twice_role'];
    await adminSql(testEnv().cluster, 'CREATE DATABASE initsql_twice');
    const sql = await initSql('--auth-user', roles[0]!, '--auth-role', roles[1]!, '--database', 'initsql_twice', '--exclude-superusers');
    await applyScript(sql, 'initsql_twice');
    const first = (await catalogSnapshot('initsql_twice', roles)) as Record<string, unknown[] | null>;
    expect(first.functions).toHaveLength(1);
    expect(first.roles).toHaveLength(2);
    expect(first.members).toHaveLength(1);
    await applyScript(sql, 'initsql_twice');
    expect(await catalogSnapshot('initsql_twice', roles)).toEqual(first);
    expect(await lookupRows('initsql_twice', roles[0]!, USERS.scram.name)).toBe(1);
  });

  it('--exclude-superusers: no row for a superuser or a member of a superuser role, one for a normal user', async () => {
    const db = 'initsql_supers';
    await adminSql(testEnv().cluster, `CREATE DATABASE ${db}`);
    await adminSql(testEnv().cluster, "CREATE ROLE initsql_super NOLOGIN SUPERUSER; CREATE ROLE initsql_member LOGIN PASSWORD 'member-pw' IN ROLE initsql_super");
    const auth = ['--auth-user', 'initsql_supers_user', '--auth-role', 'initsql_supers_role'];
    const users = [USERS.admin.name, USERS.superuser.name, 'initsql_member', USERS.scram.name, USERS.md5.name];
    const rows = async (): Promise<number[]> => Promise.all(users.map((u) => lookupRows(db, 'initsql_supers_user', u)));

    // Without the option every login role is found (so the check below can fail).
    await applyScript(await initSql(...auth), db);
    expect(await rows()).toEqual([1, 1, 1, 1, 1]);
    // The variant replaces the function in place.
    await applyScript(await initSql(...auth, '--exclude-superusers'), db);
    expect(await rows()).toEqual([0, 0, 0, 1, 1]);
  });

  it('--database grants CONNECT where PUBLIC lost it: the auth user can then log in', async () => {
    const { cluster } = testEnv();
    const db = 'initsql_connect';
    await adminSql(cluster, `CREATE DATABASE ${db}`);
    await adminSql(cluster, `REVOKE CONNECT ON DATABASE ${db} FROM PUBLIC`);
    const auth = ['--auth-user', 'initsql_connect_user', '--auth-role', 'initsql_connect_role'];
    await applyScript(await initSql(...auth), db);
    await adminSql(cluster, "ALTER ROLE initsql_connect_user PASSWORD 'connect-pw'");
    const login = async (): Promise<string> => {
      const client = new pg.Client({ host: cluster.host, port: cluster.port, database: db, user: 'initsql_connect_user', password: 'connect-pw', ssl: false });
      try {
        await client.connect();
        return 'connected';
      } catch (err) {
        return (err as Error & { code?: string }).code ?? (err as Error).message;
      } finally {
        await client.end().catch(() => undefined);
      }
    };
    expect(await login()).toBe('42501'); // permission denied for database
    await applyScript(await initSql(...auth, '--database', db), db);
    expect(await adminSql(cluster, `SELECT has_database_privilege('initsql_connect_role', '${db}', 'CONNECT')`)).toBe('t');
    expect(await login()).toBe('connected');
  });

  it('--cnpg: each postInitApplicationSQL item run on its own, twice, sets it up once; the managed role names its Secret', async () => {
    const { cluster } = testEnv();
    const db = 'initsql_cnpg';
    await adminSql(cluster, `CREATE DATABASE ${db}`);
    const roles = ['initsql_cnpg_user', 'initsql_cnpg_role'];
    const out = parse(await initSql('--cnpg', '--auth-user', roles[0]!, '--auth-role', roles[1]!, '--database', db, '--password-secret', 'cnpg-auth')) as {
      postInitApplicationSQL: string[];
      roles: Array<{ name: string; login: boolean; inRoles: string[]; passwordSecret: { name: string } }>;
    };
    expect(out.roles).toMatchObject([{ name: roles[0], login: true, inRoles: [roles[1]], passwordSecret: { name: 'cnpg-auth' } }]);
    for (const statement of out.postInitApplicationSQL) await adminSql(cluster, statement, db);
    const first = await catalogSnapshot(db, roles);
    for (const statement of out.postInitApplicationSQL) await adminSql(cluster, statement, db);
    expect(await catalogSnapshot(db, roles)).toEqual(first);
    expect(await lookupRows(db, roles[0]!, USERS.scram.name)).toBe(1);
  });
});
