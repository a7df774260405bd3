-- pg-ingress auth_query setup. Run as a superuser (the function must be owned by one)
-- in every database pg-ingress runs auth_query in (auth_dbname, or each target database).
BEGIN;
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgbouncer_auth') THEN
    CREATE ROLE pgbouncer_auth NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgbouncer') THEN
    CREATE ROLE pgbouncer LOGIN IN ROLE pgbouncer_auth;
  END IF;
END
$$;
CREATE SCHEMA IF NOT EXISTS pgbouncer;
REVOKE ALL ON SCHEMA pgbouncer FROM PUBLIC;
GRANT USAGE ON SCHEMA pgbouncer TO pgbouncer_auth;
CREATE OR REPLACE FUNCTION pgbouncer.get_auth(p_username TEXT)
RETURNS TABLE(username TEXT, password TEXT)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT usename::TEXT, passwd::TEXT FROM pg_catalog.pg_shadow WHERE usename = p_username $$;
REVOKE ALL ON FUNCTION pgbouncer.get_auth(TEXT) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(TEXT) TO pgbouncer_auth;
COMMIT;
-- Then give the login role a password (psql): \password pgbouncer
-- and put the same password in auth_password_file (or PG_INGRESS_AUTH_PASSWORD).
-- Everything above is `pg-ingress init-sql` verbatim (test/docker/dev-init.test.ts
-- fails when they drift). Development only: the auth_user's password (the compose
-- Secret config/docker/auth-password) and a SCRAM application user to connect as.
SET password_encryption = 'scram-sha-256';
ALTER ROLE pgbouncer PASSWORD 'pgbouncer-dev-password';
CREATE ROLE app LOGIN PASSWORD 'app';
GRANT ALL ON SCHEMA public TO app;
