// `pg-ingress init-sql`: the least-privilege auth_query setup, to run as a
// superuser in each database pg-ingress looks users up in.
//
// Why not the common recipe: `GRANT SELECT ON pg_shadow TO pgbouncer_auth` lets
// every member read every password hash, and is unnecessary once the function
// is SECURITY DEFINER and owned by a superuser. A fixed search_path keeps the
// definer's rights from being hijacked by objects in other schemas.

export interface InitSqlOptions {
  authUser: string;
  authRole: string;
}

const IDENT = /^[a-z_][a-z0-9_]*$/;

function ident(name: string): string {
  return IDENT.test(name) ? name : `"${name.replaceAll('"', '""')}"`;
}

export function initSql({ authUser, authRole }: InitSqlOptions): string {
  const user = ident(authUser);
  const role = ident(authRole);
  const lit = (s: string): string => `'${s.replaceAll("'", "''")}'`;
  return `-- pg-ingress auth_query setup. Run as a superuser (the function must be owned by one)
-- in every database pg-ingress runs auth_query in (auth_dbname, or each target database).
BEGIN;
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = ${lit(authRole)}) THEN
    CREATE ROLE ${role} NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = ${lit(authUser)}) THEN
    CREATE ROLE ${user} LOGIN IN ROLE ${role};
  END IF;
END
$$;
CREATE SCHEMA IF NOT EXISTS pgbouncer;
REVOKE ALL ON SCHEMA pgbouncer FROM PUBLIC;
GRANT USAGE ON SCHEMA pgbouncer TO ${role};
CREATE OR REPLACE FUNCTION pgbouncer.get_auth(p_username TEXT)
RETURNS TABLE(username TEXT, password TEXT)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT usename::TEXT, passwd::TEXT FROM pg_catalog.pg_shadow WHERE usename = p_username $$;
REVOKE ALL ON FUNCTION pgbouncer.get_auth(TEXT) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(TEXT) TO ${role};
COMMIT;
-- Then give the login role a password (psql): \\password ${user}
-- and put the same password in auth_password_file (or PG_INGRESS_AUTH_PASSWORD).
`;
}
