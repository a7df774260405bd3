// config/dev-init.sql, which the compose stack's PostgreSQL runs at its first
// start, must begin with exactly what `pg-ingress init-sql` prints, so the dev
// stack always has the auth setup the CLI documents. Needs no Docker.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const devInit = readFileSync('config/dev-init.sql', 'utf8');

describe('config/dev-init.sql', () => {
  it('starts with the output of `pg-ingress init-sql`', () => {
    const printed = execFileSync(process.execPath, ['bin/pg-ingress.js', 'init-sql'], { encoding: 'utf8' });
    expect(printed).toContain('pgbouncer.get_auth');
    expect(devInit.slice(0, printed.length)).toBe(printed);
  });

  it("sets the auth_user's password to the compose Secret's", () => {
    const secret = readFileSync('config/docker/auth-password', 'utf8').replace(/\n$/, '');
    expect(devInit).toContain(`ALTER ROLE pgbouncer PASSWORD '${secret}';`);
  });
});
