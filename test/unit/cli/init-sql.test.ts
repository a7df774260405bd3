// `pg-ingress init-sql` output, and the docker-compose init script built from it.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { initSql, initSqlCnpg, initSqlStatements } from '../../../src/cli/init-sql.js';

describe('init-sql', () => {
  it('is what config/dev-init.sql starts with (regenerate it with `pg-ingress init-sql` when this fails)', () => {
    const dev = readFileSync('config/dev-init.sql', 'utf8');
    expect(dev.startsWith(initSql({ authUser: 'pgbouncer', authRole: 'pgbouncer_auth' }))).toBe(true);
  });

  it('quotes role names that are not plain identifiers, in SQL and in literals', () => {
    const sql = initSql({ authUser: 'Bouncer"X', authRole: "o'role" });
    expect(sql).toContain('CREATE ROLE "Bouncer""X" LOGIN IN ROLE "o\'role"');
    expect(sql).toContain("rolname = 'o''role'");
  });

  it('grants the lookup to the role only, never pg_shadow', () => {
    const sql = initSql({ authUser: 'pgbouncer', authRole: 'pgbouncer_auth' });
    expect(sql).toContain('GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(TEXT) TO pgbouncer_auth');
    expect(sql).toContain('SECURITY DEFINER');
    expect(sql).not.toMatch(/ON pg_shadow/i);
  });
});

describe('init-sql options', () => {
  const base = { authUser: 'pgbouncer', authRole: 'pgbouncer_auth' };

  it('--database grants CONNECT on that database (quoted) to the role, and only then', () => {
    expect(initSql({ ...base, database: 'App-DB' })).toContain('GRANT CONNECT ON DATABASE "App-DB" TO pgbouncer_auth;');
    expect(initSql(base)).not.toContain('GRANT CONNECT');
  });

  it('--exclude-superusers filters superusers and members of superuser roles in the function body', () => {
    const sql = initSql({ ...base, excludeSuperusers: true });
    expect(sql).toContain('NOT s.usesuper');
    expect(sql).toMatch(/NOT EXISTS \(SELECT FROM pg_catalog\.pg_roles r WHERE r\.rolsuper AND pg_catalog\.pg_has_role\(s\.usesysid, r\.oid, 'MEMBER'\)\)/);
    expect(initSql(base)).not.toContain('usesuper');
  });

  it('every statement is one that can run twice: guarded CREATE ROLE, IF NOT EXISTS, OR REPLACE, GRANT/REVOKE', () => {
    for (const s of initSqlStatements({ ...base, database: 'app', excludeSuperusers: true })) {
      expect(s).toMatch(/^(DO \$\$|GRANT |REVOKE |CREATE SCHEMA IF NOT EXISTS |CREATE OR REPLACE FUNCTION )/);
    }
    const roles = initSqlStatements(base)[0]!;
    expect(roles.match(/IF NOT EXISTS/g)).toHaveLength(2);
    expect(roles.match(/CREATE ROLE/g)).toHaveLength(2);
  });

  it('--cnpg: postInitApplicationSQL holds the same statements one per item, and roles the managed auth user with its Secret', () => {
    const options = { ...base, database: 'app', excludeSuperusers: true, passwordSecret: 'pgbouncer-auth' };
    const doc = parse(initSqlCnpg(options)) as { postInitApplicationSQL: string[]; roles: unknown[] };
    expect(Object.keys(doc)).toEqual(['postInitApplicationSQL', 'roles']);
    expect(doc.postInitApplicationSQL).toEqual(initSqlStatements(options));
    expect(doc.roles).toEqual([{ name: 'pgbouncer', ensure: 'present', login: true, superuser: false, inRoles: ['pgbouncer_auth'], passwordSecret: { name: 'pgbouncer-auth' } }]);
  });

  it('--cnpg blocks paste under spec.bootstrap.initdb and spec.managed as they are (no indentation to fix)', () => {
    const out = initSqlCnpg({ ...base, passwordSecret: 's' });
    const initdb = out.slice(0, out.indexOf('# Under spec.managed'));
    const managed = out.slice(out.indexOf('# Under spec.managed'));
    const cluster = parse(`spec:\n  bootstrap:\n    initdb:\n      database: app\n${initdb.replace(/^(?!#)(?=.)/gm, '      ')}  managed:\n${managed.replace(/^(?!#)(?=.)/gm, '    ')}`) as {
      spec: { bootstrap: { initdb: { database: string; postInitApplicationSQL: string[] } }; managed: { roles: Array<{ name: string }> } };
    };
    expect(cluster.spec.bootstrap.initdb.postInitApplicationSQL).toEqual(initSqlStatements(base));
    expect(cluster.spec.managed.roles[0]!.name).toBe('pgbouncer');
  });
});

describe('README', () => {
  it("shows --cnpg's shape as the command prints it: the roles block whole, the SQL's first and last items", () => {
    const readme = readFileSync('README.md', 'utf8');
    const out = initSqlCnpg({ authUser: 'pgbouncer', authRole: 'pgbouncer_auth', passwordSecret: 'pgbouncer-auth' });
    const roles = out.slice(out.indexOf('roles:'));
    expect(readme).toContain(roles);
    const sql = out.slice(out.indexOf('postInitApplicationSQL:'), out.indexOf('# Under spec.managed')).split('\n');
    expect(readme).toContain(sql.slice(0, 5).join('\n'));
    expect(readme).toContain(`  ...\n${sql.at(-2)}\nroles:`);
  });
});
