// `pg-ingress init-sql`: the least-privilege auth_query setup, to run as a
// superuser in each database pg-ingress looks users up in, as a psql script or
// (--cnpg) as the YAML a CloudNativePG Cluster takes.
//
// Why not the common recipe: `GRANT SELECT ON pg_shadow TO pgbouncer_auth` lets
// every member read every password hash, and is unnecessary once the function
// is SECURITY DEFINER and owned by a superuser. A fixed search_path keeps the
// definer's rights from being hijacked by objects in other schemas.
//
// Every statement can run again on a database that has it already and change
// nothing: roles are created only when missing, the schema IF NOT EXISTS, the
// function CREATE OR REPLACE'd to the same body, and GRANT/REVOKE of what is
// already (not) granted are no-ops.
import { stringify } from 'yaml';

export interface InitSqlOptions {
  authUser: string;
  authRole: string;
  /** Also GRANT CONNECT ON this database to the auth role (needed where CONNECT was revoked from PUBLIC). */
  database?: string | null;
  /** get_auth returns no row for superusers and members of a superuser role (pg-ingress refuses them anyway). */
  excludeSuperusers?: boolean;
}

export interface CnpgOptions extends InitSqlOptions {
  /** The Secret (kubernetes.io/basic-auth) CloudNativePG sets the auth user's password from. */
  passwordSecret: string;
}

const IDENT = /^[a-z_][a-z0-9_]*$/;

function ident(name: string): string {
  return IDENT.test(name) ? name : `"${name.replaceAll('"', '""')}"`;
}

const lit = (s: string): string => `'${s.replaceAll("'", "''")}'`;

// Every login role, as PgBouncer's own recipe reads it.
const LOOKUP_ALL = 'SELECT usename::TEXT, passwd::TEXT FROM pg_catalog.pg_shadow WHERE usename = p_username';

// As Crunchy's get_auth (NOT rolsuper), and also members of a superuser role,
// whom SET ROLE makes superusers: the test pg-ingress applies to its own logins
// (SUPERUSER_MEMBERSHIP_QUERY), so no verifier of either leaves the database.
const LOOKUP_NON_SUPERUSERS = `SELECT s.usename::TEXT, s.passwd::TEXT FROM pg_catalog.pg_shadow s
  WHERE s.usename = p_username AND NOT s.usesuper
    AND NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolsuper AND pg_catalog.pg_has_role(s.usesysid, r.oid, 'MEMBER'))`;

/** The setup as separate statements, without their semicolons: what CloudNativePG runs one by one. */
export function initSqlStatements({ authUser, authRole, database = null, excludeSuperusers = false }: InitSqlOptions): string[] {
  const user = ident(authUser);
  const role = ident(authRole);
  return [
    `DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = ${lit(authRole)}) THEN
    CREATE ROLE ${role} NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = ${lit(authUser)}) THEN
    CREATE ROLE ${user} LOGIN IN ROLE ${role};
  END IF;
END
$$`,
    ...(database !== null ? [`GRANT CONNECT ON DATABASE ${ident(database)} TO ${role}`] : []),
    'CREATE SCHEMA IF NOT EXISTS pgbouncer',
    'REVOKE ALL ON SCHEMA pgbouncer FROM PUBLIC',
    `GRANT USAGE ON SCHEMA pgbouncer TO ${role}`,
    `CREATE OR REPLACE FUNCTION pgbouncer.get_auth(p_username TEXT)
RETURNS TABLE(username TEXT, password TEXT)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ ${excludeSuperusers ? LOOKUP_NON_SUPERUSERS : LOOKUP_ALL} $$`,
    'REVOKE ALL ON FUNCTION pgbouncer.get_auth(TEXT) FROM PUBLIC',
    `GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(TEXT) TO ${role}`,
  ];
}

/** The setup as one psql script, in a transaction. */
export function initSql(options: InitSqlOptions): string {
  const user = ident(options.authUser);
  return `-- pg-ingress auth_query setup. Run as a superuser (the function must be owned by one)
-- in every database pg-ingress runs auth_query in (auth_dbname, or each target database).
BEGIN;
${initSqlStatements(options).join(';\n')};
COMMIT;
-- Then give the login role a password (psql): \\password ${user}
-- and put the same password in auth_password_file (or PG_INGRESS_AUTH_PASSWORD).
`;
}

/**
 * Two YAML blocks for a CloudNativePG Cluster: `postInitApplicationSQL` (the
 * same statements, one list item each) to paste under spec.bootstrap.initdb,
 * and `roles` (the auth user as a managed role) under spec.managed. Together
 * they are one YAML mapping, so the output also parses as a whole.
 */
export function initSqlCnpg(options: CnpgOptions): string {
  const sql = stringify({ postInitApplicationSQL: initSqlStatements(options) }, { lineWidth: 0, blockQuote: 'literal' });
  // inRoles keeps the membership: CloudNativePG revokes memberships a managed role's spec does not list.
  const roles = stringify(
    { roles: [{ name: options.authUser, ensure: 'present', login: true, superuser: false, inRoles: [options.authRole], passwordSecret: { name: options.passwordSecret } }] },
    { lineWidth: 0 },
  );
  return `# pg-ingress auth_query setup for a CloudNativePG Cluster (\`pg-ingress init-sql --cnpg\`).
# Under spec.bootstrap.initdb: run once at bootstrap, as the superuser, in the application database
# (initdb.database); set auth_dbname to that database.
${sql}# Under spec.managed: the auth user, its password kept equal to the Secret "${options.passwordSecret}"
# (type kubernetes.io/basic-auth, username: ${options.authUser}); give pg-ingress the same password.
${roles}`;
}

/** What `pg-ingress init-sql` prints for its command-line options. */
export function initSqlCommand(args: { 'auth-user'?: string; 'auth-role'?: string; database?: string; 'exclude-superusers'?: boolean; cnpg?: boolean; 'password-secret'?: string }): string {
  const options = {
    authUser: args['auth-user'] ?? 'pgbouncer',
    authRole: args['auth-role'] ?? 'pgbouncer_auth',
    database: args.database ?? null,
    excludeSuperusers: args['exclude-superusers'] === true,
  };
  return args.cnpg ? initSqlCnpg({ ...options, passwordSecret: args['password-secret'] ?? 'pgbouncer-auth' }) : initSql(options);
}
