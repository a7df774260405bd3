// The configuration in the ConfigMap is one `pg-ingress check` accepts, with
// its files where the pod mounts them; the CloudNativePG Cluster runs exactly
// what `pg-ingress init-sql` prints and creates the role pg-ingress logs in as.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, test } from 'vitest';
import { initSql, initSqlCnpg } from '../../../src/cli/init-sql.js';
import { loadConfig } from '../../../src/config/index.js';
import { one, render } from './manifests.js';

const configMap = one(render('overlays/example'), 'ConfigMap') as any;
const yamlText: string = configMap.data['pg-ingress.yaml'];
const cluster = one(render('cloudnative-pg'), 'Cluster') as any;

/** SQL statements in order without their semicolons, split outside $$ bodies; comment lines and BEGIN/COMMIT dropped. */
function statements(sql: string): string[] {
  const body = sql.split('\n').filter((l) => !l.startsWith('--')).join('\n');
  const out: string[] = [];
  let current = '';
  for (const piece of body.split(/(\$\$|;)/)) {
    current += piece;
    if (piece === ';' && (current.match(/\$\$/g)?.length ?? 0) % 2 === 0) {
      out.push(current.trim().slice(0, -1));
      current = '';
    }
  }
  return out.filter((s) => !/^(BEGIN|COMMIT)$/.test(s));
}

describe('the ConfigMap configuration', () => {
  test('loads as `pg-ingress check` loads it, its files stubbed where the pod mounts them', () => {
    const root = mkdtempSync(join(tmpdir(), 'pg-ingress-deploy-'));
    const parsed = parse(yamlText) as Record<string, unknown>;
    const fileKeys = Object.keys(parsed).filter((k) => k.endsWith('_file'));
    expect(fileKeys.sort()).toEqual(['auth_password_file', 'client_tls_cert_file', 'client_tls_key_file']);
    const overrides: Record<string, string> = {};
    for (const key of fileKeys) {
      const stub = join(root, parsed[key] as string);
      mkdirSync(dirname(stub), { recursive: true });
      writeFileSync(stub, key === 'auth_password_file' ? 'stub-password\n' : 'stub\n');
      overrides[key] = stub;
    }
    const file = join(root, 'pg-ingress.yaml');
    writeFileSync(file, yamlText);
    const config = loadConfig({ file, env: {}, overrides });
    expect(config.auth_password).toBe('stub-password');
    expect(config.notices).toEqual([]);
    expect(config.client_tls_sslmode).toBe('require');
    expect(Object.keys(config.databases)).toEqual(['*']);
  });
  test('routes database `app` to the Cluster `app` read-write Service', () => {
    const entry = (parse(yamlText) as { databases: Record<string, string> }).databases['*'] as string;
    const host = /host=(\S+)/.exec(entry)?.[1]?.replace('{db}', cluster.spec.bootstrap.initdb.database);
    expect(host).toBe(`${cluster.metadata.name}-rw.${cluster.metadata.namespace}.svc.cluster.local`);
  });
});

describe('the CloudNativePG Cluster', () => {
  const config = parse(yamlText) as { auth_user: string };
  // The command the manifest's comment names.
  const options = { authUser: config.auth_user, authRole: 'pgbouncer_auth', excludeSuperusers: true, passwordSecret: 'pg-user-pgbouncer' };
  const cnpg = parse(initSqlCnpg(options)) as { postInitApplicationSQL: string[]; roles: unknown[] };
  test('postInitApplicationSQL and the managed role are what `init-sql --cnpg` prints', () => {
    expect(cluster.spec.bootstrap.initdb.postInitApplicationSQL).toEqual(cnpg.postInitApplicationSQL);
    expect(cluster.spec.managed.roles).toEqual(cnpg.roles);
  });
  test('postInitApplicationSQL is the script `init-sql` prints, statement for statement', () => {
    const expected = statements(initSql(options));
    expect(expected.length).toBeGreaterThan(5);
    expect(cluster.spec.bootstrap.initdb.postInitApplicationSQL).toEqual(expected);
  });
  test('no GRANT SELECT ON pg_shadow (the seed recipe): the definer function needs none', () => {
    expect(cluster.spec.bootstrap.initdb.postInitApplicationSQL.join('\n')).not.toMatch(/GRANT SELECT ON pg_shadow/i);
  });
  test('the managed role is auth_user, logs in, is in pgbouncer_auth, is no superuser, takes its password from a Secret', () => {
    const role = cluster.spec.managed.roles.find((r: { name: string }) => r.name === config.auth_user);
    expect(role).toMatchObject({ login: true, superuser: false, inRoles: ['pgbouncer_auth'], passwordSecret: { name: 'pg-user-pgbouncer' } });
    expect(role.inherit ?? true).toBe(true); // CloudNativePG's default: the role uses pgbouncer_auth's EXECUTE
  });
  test('get_auth returns no row for superusers (defense in depth behind allow_superuser: false)', () => {
    expect(cluster.spec.bootstrap.initdb.postInitApplicationSQL.join('\n')).toMatch(/NOT s\.usesuper/);
  });
  test('the statement splitter keeps $$ bodies whole', () => {
    expect(statements('-- c\nBEGIN;\nDO $$ BEGIN x; y; END $$;\nSELECT 1;\nCOMMIT;\n')).toEqual(['DO $$ BEGIN x; y; END $$', 'SELECT 1']);
  });
});
