// `pg-ingress convert`: a pgbouncer.ini becomes YAML that loads to the same
// configuration, says what it left out and why, and never prints a secret.
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { convertIni } from '../../../src/cli/convert.js';
import { loadConfig, type Config } from '../../../src/config/index.js';
import { configError, tempDir } from '../config/helpers.js';

const file = tempDir();
const SCRAM = 'SCRAM-SHA-256$4096:c2FsdHNhbHQ=$3Kk/UWhXKPQEbLwIsBNNTAQCjYCfLmn4eTG9YiM7NKY=:0f0hP8rFvK5bKXL8bSqkGaFLXIYV5tZ2kBGtnydZZ0A=';
const userlist = file('userlist.txt', `"pgbouncer" "auth-secret-pw"\n"alice" "${SCRAM}"\n`);
const ini = file(
  'pgbouncer.ini',
  [
    '[databases]',
    'app = host=db.internal port=5433 dbname=app_prod pool_size=5 pool_mode=transaction',
    "'my db' = host=other dbname=x reserve_pool=2",
    '* = host={db}-rw',
    '[users]',
    'alice = pool_mode=session max_user_connections=3',
    '[pgbouncer]',
    'logfile = /var/log/pgbouncer/pgbouncer.log',
    'listen_addr = *',
    'listen_port = 6432',
    'auth_type = scram-sha-256',
    `auth_file = ${userlist}`,
    'admin_users = admin, ops',
    'server_reset_query = DISCARD ALL',
    'tcp_keepalive = 1',
    'max_client_conn = 500',
  ].join('\n'),
);

/** A Config without what differs by nature between two files (their names, the warnings). */
const comparable = (c: Config) => ({ ...c, config_file: null, notices: [] });

describe('pg-ingress convert', () => {
  const yaml = convertIni(ini);

  test('the YAML loads to the configuration the ini loads to', () => {
    expect(comparable(loadConfig({ file: file('converted.yaml', yaml), env: {} }))).toEqual(comparable(loadConfig({ file: ini, env: {} })));
  });

  test('keeps what the file sets, typed: numbers, lists, quoted names, the * entry', () => {
    const doc = parse(yaml) as Record<string, unknown>;
    expect(doc).toMatchObject({
      listen_addr: '0.0.0.0',
      listen_port: 6432,
      max_client_conn: 500,
      tcp_keepalive: true,
      admin_users: ['admin', 'ops'],
      auth_file: userlist,
      databases: {
        app: { host: 'db.internal', port: 5433, dbname: 'app_prod', pool_size: 5, pool_mode: 'transaction' },
        'my db': { host: 'other', dbname: 'x', reserve_pool_size: 2 },
        '*': { host: '{db}-rw' },
      },
      users: { alice: { pool_mode: 'session', max_user_connections: 3 } },
    });
    expect(doc).not.toHaveProperty('logfile');
    expect(doc).not.toHaveProperty('auth_type'); // scram-sha-256 is what pg-ingress does anyway
  });

  test('says in comments what it left out, why, and which defaults differ from PgBouncer’s', () => {
    expect(yaml).toMatch(/^# .*pgbouncer\.ini:8: logfile: accepted, has no effect in pg-ingress: logs go to stdout/m);
    expect(yaml).toMatch(/^# +client_tls_sslmode: "require" here \(PgBouncer: disable\)$/m);
    expect(yaml).toMatch(/^# +server_tls_sslmode: "disable" here \(PgBouncer: prefer\)$/m);
    expect(yaml).toContain('1 SCRAM verifiers, 0 md5 hashes, 1 plaintext passwords');
  });

  test('no secret from the userlist is printed', () => {
    expect(yaml).not.toContain('auth-secret-pw');
    expect(yaml).not.toContain(SCRAM.slice(20));
    expect(yaml).not.toMatch(/auth_password:/);
  });

  test('--userlist names another userlist as auth_file', () => {
    const other = file('other-userlist.txt', '"pgbouncer" "x"\n');
    expect(parse(convertIni(ini, { userlist: other }))).toMatchObject({ auth_file: other });
  });

  test('a file that would not run is not converted: the same errors as at start', () => {
    const bad = file('bad.ini', '[pgbouncer]\nauth_type = hba\nauth_hba_file = /etc/pgbouncer/hba.conf\n');
    const msg = configError(() => convertIni(bad));
    expect(msg).toContain('bad.ini:2: auth_type: "hba" is not supported');
    expect(msg).toContain('bad.ini:3: auth_hba_file: not supported: HBA rules are out of scope');
  });
});
