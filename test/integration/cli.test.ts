// The installed command: `pg-ingress --config FILE` runs the proxy a user
// connects to with psql; `init-sql` and `check` help set it up.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import pg from 'pg';
import { BIN, listeningCount, startCliProxy } from '../harness/cli.js';
import { activeQueries, until } from '../harness/poll.js';
import { USERS } from '../harness/postgres.js';
import { conninfo, pgOptions, psql, testEnv } from '../harness/proxy.js';

const run = promisify(execFile);

describe('pg-ingress command', () => {
  it('runs from a YAML file and environment, and serves psql over verified TLS', async () => {
    const { caFile } = testEnv();
    const proxy = await startCliProxy({
      yaml: (dir) => {
        // The auth password from a file, as from a Kubernetes Secret.
        writeFileSync(join(dir, 'auth-password'), `${USERS.auth.password}\n`);
        return [`auth_password_file: ${join(dir, 'auth-password')}`];
      },
      ready: (out) => listeningCount(out) >= 1, // default workers: one per CPU
    });
    try {
      expect(listeningCount(proxy.output())).toBeGreaterThanOrEqual(1);
      const port = proxy.port;
      const r = await psql(conninfo(port, 'app2', USERS.scram.name, `sslmode=verify-full sslrootcert=${caFile}`), 'SELECT db FROM whereami', { PGPASSWORD: USERS.scram.password });
      expect(r.stdout).toBe('app2');
      expect(proxy.output()).not.toContain(USERS.auth.password);
    } finally {
      await proxy.stop();
    }
  });

  it('runs two workers on one port, and a cancel reaches the right worker whichever accepts it', async () => {
    const proxy = await startCliProxy({
      yaml: () => ['workers: 2', 'pool_mode: transaction'],
      env: { PG_INGRESS_AUTH_PASSWORD: USERS.auth.password },
      ready: (out) => listeningCount(out) === 2,
    });
    const port = proxy.port;
    const clients: pg.Client[] = [];
    try {
      expect(listeningCount(proxy.output())).toBe(2);
      // Round-robin (Node 20) alternates; with reusePort (Node 24) the kernel hashes each connection, so 4 clients
      // land on one worker 1 time in 8: connect until both are seen (all on one of 40: 2^-39), keep 2 of each.
      const workerOf = (c: pg.Client): number => (c as unknown as { processID: number }).processID >>> 24;
      const extra: pg.Client[] = [];
      for (let i = 0; i < 40 && !([1, 2].every((w) => clients.filter((c) => workerOf(c) === w).length >= 2)); i++) {
        const c = new pg.Client({ ...pgOptions(port, 'app1', USERS.scram.name, USERS.scram.password) });
        await c.connect();
        if (clients.filter((k) => workerOf(k) === workerOf(c)).length < 2) clients.push(c);
        else extra.push(c);
      }
      await Promise.all(extra.map((c) => c.end()));
      const workersSeen = new Set(clients.map(workerOf));
      expect([...workersSeen].sort()).toEqual([1, 2]);
      for (const [i, c] of clients.entries()) {
        const started = Date.now();
        const text = `SELECT pg_sleep(10) AS cli_cancel_${i}`; // its own text: other files share the cluster and user
        const q = c.query(text);
        await until(`client ${i}'s query running`, async () => (await activeQueries(testEnv().cluster, USERS.scram.name, text)) === 1);
        const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
        const cancel = Buffer.alloc(16);
        cancel.writeInt32BE(16, 0);
        cancel.writeInt32BE(80877102, 4);
        cancel.writeInt32BE(processID, 8);
        cancel.writeInt32BE(secretKey, 12);
        // Several cancel connections: round-robin hands them to both workers.
        for (let k = 0; k < 2; k++) net.connect(port, '127.0.0.1', function (this: net.Socket) { this.end(cancel); }).on('error', () => undefined);
        await expect(q).rejects.toMatchObject({ code: '57014' });
        expect(Date.now() - started).toBeLessThan(5000);
      }
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
      await proxy.stop();
    }
  });

  it('prints least-privilege auth_query SQL', async () => {
    const { stdout } = await run(process.execPath, [BIN, 'init-sql']);
    expect(stdout).toContain('SECURITY DEFINER');
    expect(stdout).toContain('SET search_path = pg_catalog, pg_temp');
    expect(stdout).toContain('REVOKE ALL ON FUNCTION pgbouncer.get_auth(TEXT) FROM PUBLIC');
    expect(stdout).not.toMatch(/GRANT SELECT ON pg_shadow/i);
  });

  it('check names the file and key of a bad setting and exits 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pg-ingress-cli-'));
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'listen_port: lots\n');
    const err = await run(process.execPath, [BIN, 'check', '--config', file]).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(2);
    expect(err?.stderr).toContain(`${file}: listen_port`);
  });
});
