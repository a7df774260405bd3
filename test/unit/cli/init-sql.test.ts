// `pg-ingress init-sql` output, and the docker-compose init script built from it.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { initSql } from '../../../src/cli/init-sql.js';

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
