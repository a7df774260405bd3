// The PgBouncer connection lines: wording, and each silenced by its own switch.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { logDisconnection, logLogin, logLoginFailed, logPoolerError, type ConnectionLogSettings } from '../../../src/log/connection-events.js';
import { createLogger, lazyChild } from '../../../src/log/logger.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const out = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { log: lazyChild(createLogger('info', out), { conn: 4, client_addr: '127.0.0.1', db: 'app', user: 'alice' }), lines };
}

const ON: ConnectionLogSettings = { log_connections: true, log_disconnections: true, log_pooler_errors: true };
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

function writeAll(settings: ConnectionLogSettings, log: ReturnType<typeof capture>['log']): void {
  logLogin(settings, log, { db: 'app', user: 'alice', tls: 'TLSv1.3/TLS_AES_256_GCM_SHA384' });
  logLoginFailed(settings, log, { db: 'app', user: 'alice' });
  logPoolerError(settings, log, { code: '28P01', message: 'password authentication failed for user "alice"' });
  logDisconnection(settings, log, 'client close request', 1_000, 63_500);
}

describe('connection lines', () => {
  it('PgBouncer wording at info, with the connection bindings', async () => {
    const { log, lines } = capture();
    writeAll(ON, log);
    logLogin(ON, log, { db: 'app', user: 'alice', tls: null });
    await tick();
    expect(lines.map((l) => l.msg)).toEqual([
      'login: db=app user=alice tls=TLSv1.3/TLS_AES_256_GCM_SHA384',
      'login failed: db=app user=alice',
      'pooler error: password authentication failed for user "alice"',
      'closing because: client close request (age=62s)',
      'login: db=app user=alice tls=no',
    ]);
    for (const l of lines) expect(l).toMatchObject({ level: 30, conn: 4, client_addr: '127.0.0.1', db: 'app', user: 'alice' });
    expect(lines[2]).toMatchObject({ code: '28P01' });
  });

  it.each([
    ['log_connections', ['pooler error: password authentication failed for user "alice"', 'closing because: client close request (age=62s)']],
    ['log_disconnections', ['login: db=app user=alice tls=TLSv1.3/TLS_AES_256_GCM_SHA384', 'login failed: db=app user=alice', 'pooler error: password authentication failed for user "alice"']],
    ['log_pooler_errors', ['login: db=app user=alice tls=TLSv1.3/TLS_AES_256_GCM_SHA384', 'login failed: db=app user=alice', 'closing because: client close request (age=62s)']],
  ] as const)('%s off silences only its lines', async (key, expected) => {
    const { log, lines } = capture();
    writeAll({ ...ON, [key]: false }, log);
    await tick();
    expect(lines.map((l) => l.msg)).toEqual(expected);
  });
});
