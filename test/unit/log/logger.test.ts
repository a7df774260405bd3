// Loggers: per-connection children made lazily, both formats (JSON and text)
// never print a secret, text lines name the connection, and the level can
// change at run time for the children that already exist.
import { Writable } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { connectionPrefix, createLogger, lazyChild, logFormat, setLogLevel, type LogFormat } from '../../../src/log/logger.js';

/** A logger writing into memory; `lines` are the raw lines (JSON or text). */
function capture(level: string, format: LogFormat = 'json') {
  const raw: string[] = [];
  const out = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) raw.push(l);
      done();
    },
  });
  const log = createLogger(level, out, format);
  return { log, raw, json: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('lazyChild', () => {
  it('logs with the bindings of every level of children', async () => {
    const { log, json } = capture('info');
    lazyChild(lazyChild(log, { conn: 7 }), { db: 'app', user: 'u' }).warn({ code: '28P01' }, 'refused');
    await tick();
    expect(json()).toHaveLength(1);
    expect(json()[0]).toMatchObject({ conn: 7, db: 'app', user: 'u', code: '28P01', msg: 'refused' });
  });

  it('writes what a pino child would, for every way of calling, and makes no pino child', async () => {
    const { log, json } = capture('info');
    const real = log.child({ worker: 1 });
    const made = vi.spyOn(real, 'child');
    const conn = lazyChild(lazyChild(real, { conn: 7, client_addr: '127.0.0.1' }), { db: 'app', user: 'u' });
    conn.info('plain');
    conn.info('printf %s=%d', 'n', 3);
    conn.info({ code: '08P01', conn: 8 }, 'fields');
    conn.error(new Error('boom'));
    await tick();
    expect(made).not.toHaveBeenCalled();
    const bound = { worker: 1, conn: 7, client_addr: '127.0.0.1', db: 'app', user: 'u' };
    expect(json()).toMatchObject([
      { ...bound, msg: 'plain' },
      { ...bound, msg: 'printf n=3' },
      { ...bound, conn: 8, code: '08P01', msg: 'fields' },
      { ...bound, level: 50, msg: 'boom', err: { type: 'Error', message: 'boom' } },
    ]);
  });

  it('prints nothing below the level', async () => {
    const { log, raw } = capture('warn');
    lazyChild(log, { conn: 1 }).debug('hidden');
    lazyChild(log, { conn: 1 }).info('hidden');
    await tick();
    expect(raw).toHaveLength(0);
  });
});

describe('no secret in either format', () => {
  // Every redact path, at the top and one level down.
  const secrets = { password: 'hunter2-a', auth_password: 'hunter2-b', clientKey: 'hunter2-c', serverKey: 'hunter2-d', secret: 'hunter2-e', login: { password: 'hunter2-f', auth_password: 'hunter2-g' } };

  for (const format of ['json', 'text'] as const) {
    it(`${format}: redacts every secret path, from a connection's child too`, async () => {
      const { log, raw } = capture('info', format);
      log.info(secrets, 'root line');
      lazyChild(lazyChild(log, { conn: 2, client_addr: '10.0.0.1' }), { db: 'app', user: 'alice' }).warn(secrets, 'conn line');
      log.child({ component: 'auth_query' }).error(secrets, 'child line');
      await tick();
      expect(raw).toHaveLength(3);
      for (const line of raw) {
        expect(line).not.toMatch(/hunter2/);
        expect(line).toContain('[redacted]');
      }
    });
  }
});

describe('text format', () => {
  it('one line per event, naming the connection, client address and port, database and user', async () => {
    const { log, raw } = capture('info', 'text');
    lazyChild(lazyChild(log, { conn: 7, client_addr: '127.0.0.1', client_port: 51234 }), { db: 'app', user: 'alice' }).info({ code: '28P01' }, 'pooler error: password authentication failed for user "alice"');
    await tick();
    expect(raw).toHaveLength(1);
    expect(raw[0]).toMatch(/^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} .+\] INFO: C-7: app\/alice@127\.0\.0\.1:51234 pooler error: password authentication failed for user "alice" \{"code":"28P01"\}$/);
  });

  it('a connection not logged in yet says (nodb)/(nouser); an IPv6 address is bracketed', () => {
    expect(connectionPrefix({ conn: 3, client_addr: '::1', client_port: 5000 })).toBe('C-3: (nodb)/(nouser)@[::1]:5000 ');
    expect(connectionPrefix({ msg: 'pg-ingress listening' })).toBe('');
  });

  it('a newline in a client-supplied name cannot forge a second line', async () => {
    const { log, raw } = capture('info', 'text');
    lazyChild(log, { conn: 1, client_addr: '127.0.0.1', db: 'x\nINFO: C-9: fake', user: 'u\r' }).info('database "x\n" does not exist');
    await tick();
    expect(raw).toHaveLength(1);
    expect(raw[0]).toContain('x\\nINFO: C-9: fake/u\\r@127.0.0.1');
    expect(raw[0]).toContain('database "x\\n" does not exist');
  });

  it('an err field stays on the line', async () => {
    const { log, raw } = capture('info', 'text');
    log.warn({ err: 'first\nsecond' }, 'client connection failed');
    await tick();
    expect(raw).toHaveLength(1);
    expect(raw[0]).toContain('client connection failed {"err":"first\\nsecond"}');
  });
});

describe('logFormat', () => {
  it('auto: text at a terminal, JSON otherwise; explicit formats stand', () => {
    expect(logFormat('auto', true)).toBe('text');
    expect(logFormat('auto', false)).toBe('json');
    expect(logFormat('json', true)).toBe('json');
    expect(logFormat('text', false)).toBe('text');
  });
});

describe('setLogLevel', () => {
  it('children and lazy children made before the change follow it, both ways', async () => {
    const { log, json } = capture('info');
    const child = log.child({ worker: 1 });
    const component = child.child({ component: 'auth_query' });
    const conn = lazyChild(lazyChild(child, { conn: 5 }), { db: 'app', user: 'u' });
    conn.info('made the real child while at info');
    component.debug('hidden at info');
    setLogLevel(child, 'debug');
    component.debug('component debug');
    conn.debug('conn debug');
    lazyChild(child, { conn: 6 }).debug('new conn debug');
    setLogLevel(child, 'warn');
    component.info('hidden at warn');
    conn.info('hidden at warn');
    conn.warn('conn warn');
    await tick();
    expect(json().map((l) => l.msg)).toEqual(['made the real child while at info', 'component debug', 'conn debug', 'new conn debug', 'conn warn']);
  });

  it('on the root, every child follows', async () => {
    const { log, json } = capture('warn');
    const conn = lazyChild(log.child({ worker: 2 }), { conn: 1 });
    setLogLevel(log, 'info');
    conn.info('now shown');
    await tick();
    expect(json().map((l) => l.msg)).toEqual(['now shown']);
  });
});
