// What real clients never send: every bad input ends in an ErrorResponse with
// the right SQLSTATE or a clean close, never a hang or a crash, and other
// clients are unaffected.
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import type { RunningProxy } from '../../src/proxy.js';
import { USERS } from '../harness/postgres.js';
import { pgOptions, startTestProxy, withClient } from '../harness/proxy.js';
import { errorFields, gssencRequest, int32s, RawConn, sslRequest, startup, startupWithVersion } from '../harness/raw.js';

let proxy: RunningProxy;
beforeAll(async () => {
  proxy = await startTestProxy({ client_tls_sslmode: 'prefer', max_packet_size: 64 * 1024 });
});
afterAll(async () => {
  await proxy.close();
});

const healthy = (): Promise<number> => withClient(pgOptions(proxy.port, 'app1', USERS.scram.name, USERS.scram.password), async (c) => (await c.query('SELECT 1 AS one')).rows[0].one as number);

async function expectError(conn: RawConn, code: string, message?: RegExp): Promise<Record<string, string>> {
  const m = await conn.message();
  expect(m?.type).toBe('E');
  const f = errorFields(m!.body);
  expect(f.C).toBe(code);
  if (message) expect(f.M).toMatch(message);
  expect(await conn.waitClosed()).toBe(true);
  return f;
}

describe('first packet', () => {
  it('answers GSSENCRequest with N, then accepts SSLRequest and a startup over TLS', async () => {
    const c = await RawConn.connect(proxy.port);
    c.write(gssencRequest());
    expect(await c.byte()).toBe('N');
    c.write(sslRequest());
    expect(await c.byte()).toBe('S');
    await c.startTls();
    c.write(startup({ user: USERS.scram.name, database: 'app1' }));
    const auth = await c.message();
    expect(auth?.type).toBe('R');
    expect(auth!.body.readInt32BE(0)).toBe(10); // AuthenticationSASL
    expect(auth!.body.toString()).toContain('SCRAM-SHA-256');
    c.end();
  });

  it('selects ALPN "postgresql" for a client that offers it (libpq 17), on every connection', async () => {
    for (let i = 0; i < 2; i++) {
      const c = await RawConn.connect(proxy.port);
      c.write(sslRequest());
      expect(await c.byte()).toBe('S');
      await c.startTls('localhost', ['postgresql']);
      expect((c.socket as TLSSocket).alpnProtocol).toBe('postgresql');
      c.end();
    }
  });

  it('drops bytes sent after SSLRequest before the handshake (CVE-2021-23214)', async () => {
    const c = await RawConn.connect(proxy.port);
    c.write(Buffer.concat([sslRequest(), startup({ user: 'x', database: 'app1' })]));
    expect(await c.byte()).toBeNull();
    expect(c.closed).toBe(true);
  });

  it('refuses a startup packet longer than 10 000 bytes', async () => {
    const c = await RawConn.connect(proxy.port);
    c.write(int32s(10_001, 196608));
    await expectError(c, '08P01', /invalid length of startup packet/);
  });

  it('refuses a length below 8', async () => {
    const c = await RawConn.connect(proxy.port);
    c.write(int32s(3, 0));
    await expectError(c, '08P01');
  });

  it('refuses protocol 2.0', async () => {
    const c = await RawConn.connect(proxy.port);
    c.write(startupWithVersion(0x20000, { user: 'x' }));
    await expectError(c, '08P01', /unsupported frontend protocol 2\.0/);
  });

  it('negotiates protocol 3.2 and _pq_ options down to 3.0', async () => {
    const c = await RawConn.connect(proxy.port);
    c.write(startupWithVersion(0x30002, { user: USERS.scram.name, database: 'app1', '_pq_.compression': 'on' }));
    const v = await c.message();
    expect(v?.type).toBe('v');
    expect(v!.body.readInt32BE(0)).toBe(0);
    expect(v!.body.readInt32BE(4)).toBe(1);
    expect(v!.body.toString('utf8', 8)).toBe('_pq_.compression\0');
    expect((await c.message())?.type).toBe('R');
    c.end();
  });

  it('refuses an unsupported startup parameter the way PgBouncer words it', async () => {
    const c = await RawConn.connect(proxy.port);
    c.write(startup({ user: USERS.scram.name, database: 'app1', work_mem: '1GB' }));
    await expectError(c, '08P01', /unsupported startup parameter: work_mem/);
  });

  it('closes quietly when the client vanishes mid-packet', async () => {
    const c = await RawConn.connect(proxy.port);
    c.write(int32s(100, 196608).subarray(0, 6));
    c.end();
    expect(await healthy()).toBe(1);
  });
});

describe('authentication exchange', () => {
  it('answers a non-password message during SASL with 08P01', async () => {
    const c = await RawConn.connect(proxy.port);
    c.write(startup({ user: USERS.scram.name, database: 'app1' }));
    expect((await c.message())?.type).toBe('R');
    c.write(serialize.query('SELECT 1'));
    await expectError(c, '08P01', /expected password response/);
  });

  it('answers a malformed SASLInitialResponse with 08P01', async () => {
    const c = await RawConn.connect(proxy.port);
    c.write(startup({ user: USERS.scram.name, database: 'app1' }));
    await c.message();
    c.write(Buffer.concat([Buffer.from('p'), int32s(4 + 6), Buffer.from('SCRAM\0')]));
    await expectError(c, '08P01');
  });

  it('answers garbage SCRAM client-first data with 08P01', async () => {
    const c = await RawConn.connect(proxy.port);
    c.write(startup({ user: USERS.scram.name, database: 'app1' }));
    await c.message();
    c.write(serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', 'garbage'));
    await expectError(c, '08P01');
  });

  it('refuses an oversized message during login', async () => {
    const c = await RawConn.connect(proxy.port);
    c.write(startup({ user: USERS.scram.name, database: 'app1' }));
    await c.message();
    c.write(Buffer.concat([Buffer.from('p'), int32s(1_000_000)]));
    const m = await c.message();
    expect(m === null || m.type === 'E').toBe(true);
    expect(await c.waitClosed()).toBe(true);
    expect(await healthy()).toBe(1);
  });
});

describe('after login', () => {
  it('refuses a message over max_packet_size and closes only that client', async () => {
    await withClient(pgOptions(proxy.port, 'app1', USERS.scram.name, USERS.scram.password), async (other) => {
      // A real login through node-postgres, then misbehave on its socket.
      const victim = new pg.Client(pgOptions(proxy.port, 'app1', USERS.scram.name, USERS.scram.password));
      victim.on('error', () => undefined);
      await victim.connect();
      const stream = (victim as unknown as { connection: { stream: import('node:stream').Duplex } }).connection.stream;
      const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()));
      const received: Buffer[] = [];
      stream.on('data', (d: Buffer) => received.push(d));
      stream.write(Buffer.concat([Buffer.from('Q'), int32s(128 * 1024)]));
      await closed;
      const all = Buffer.concat(received);
      const at = all.indexOf(Buffer.from('C08P01\0'));
      expect(at).toBeGreaterThan(0);
      expect((await other.query('SELECT 2 AS two')).rows[0].two).toBe(2);
    });
  });
});
