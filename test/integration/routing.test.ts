// The DSN map: named entries, the '*' fallback, PGBOUNCER_DSN_* from the environment.
import { afterEach, describe, expect, it } from 'vitest';
import postgres from 'postgres';
import { readFileSync } from 'node:fs';
import type { RunningProxy } from '../../src/proxy.js';
import { USERS } from '../harness/postgres.js';
import { connectError, pgOptions, startTestProxy, testEnv, withClient } from '../harness/proxy.js';

let proxy: RunningProxy | null = null;
afterEach(async () => {
  await proxy?.close();
  proxy = null;
});

const whereami = (port: number, db: string): Promise<string> =>
  withClient(pgOptions(port, db, USERS.scram.name, USERS.scram.password), async (c) => (await c.query('SELECT db FROM whereami')).rows[0].db as string);

describe('DSN map', () => {
  it('sends each database name to its own upstream database', async () => {
    proxy = await startTestProxy();
    expect(await whereami(proxy.port, 'app1')).toBe('app1');
    expect(await whereami(proxy.port, 'app2')).toBe('app2');
  });

  it('maps an alias to another dbname and falls back to * for other names', async () => {
    const { cluster } = testEnv();
    proxy = await startTestProxy({
      databases: {
        reporting: `host=${cluster.host} port=${cluster.port} dbname=app2`,
        '*': `host=${cluster.host} port=${cluster.port}`,
      },
    });
    expect(await whereami(proxy.port, 'reporting')).toBe('app2');
    expect(await whereami(proxy.port, 'app1')).toBe('app1');
    const err = await connectError(pgOptions(proxy.port, 'not_a_db', USERS.scram.name, USERS.scram.password));
    expect(err.code).toBe('3D000'); // from Postgres itself, relayed
  });

  it('substitutes {db} in a * host template', async () => {
    const { cluster } = testEnv();
    // "{db}" becomes the requested name: 127.0.0.1 is reached only when the template expands right.
    proxy = await startTestProxy({ databases: { '*': `host=127.0.0.{db} port=${cluster.port} dbname=app1` } });
    expect(await whereami(proxy.port, '1')).toBe('app1');
  });

  it('reads PGBOUNCER_DSN_0, _1, … from the environment and stops at the first gap', async () => {
    const { cluster } = testEnv();
    proxy = await startTestProxy({ databases: undefined }, {
      PGBOUNCER_DSN_0: `first=host=${cluster.host} port=${cluster.port} dbname=app1`,
      PGBOUNCER_DSN_1: `second=host=${cluster.host} port=${cluster.port} dbname=app2`,
      PGBOUNCER_DSN_3: `skipped=host=${cluster.host} port=${cluster.port} dbname=app1`,
    });
    expect(await whereami(proxy.port, 'first')).toBe('app1');
    expect(await whereami(proxy.port, 'second')).toBe('app2');
    const err = await connectError(pgOptions(proxy.port, 'skipped', USERS.scram.name, USERS.scram.password));
    expect(err.code).toBe('3D000');
  });

  it('serves postgres.js over verified TLS', async () => {
    proxy = await startTestProxy();
    const sql = postgres({
      host: 'localhost',
      port: proxy.port,
      database: 'app2',
      username: USERS.md5.name,
      password: USERS.md5.password,
      ssl: { ca: readFileSync(testEnv().caFile, 'utf8') },
      max: 1,
      onnotice: () => undefined,
    });
    try {
      const rows = await sql`SELECT db, current_user AS u FROM whereami`;
      expect(rows[0]).toEqual({ db: 'app2', u: USERS.md5.name });
    } finally {
      await sql.end();
    }
  });
});
