// Per-connection loggers: made lazily, carry their bindings, and never print a password.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, lazyChild } from '../../../src/log/logger.js';

function capture(level: string): { log: ReturnType<typeof createLogger>; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const out = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger(level, out), lines };
}

describe('lazyChild', () => {
  it('logs with the bindings of every level of children', async () => {
    const { log, lines } = capture('info');
    lazyChild(lazyChild(log, { conn: 7 }), { db: 'app', user: 'u' }).warn({ code: '28P01' }, 'refused');
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ conn: 7, db: 'app', user: 'u', code: '28P01', msg: 'refused' });
  });

  it('prints nothing below the level', async () => {
    const { log, lines } = capture('warn');
    lazyChild(log, { conn: 1 }).debug('hidden');
    lazyChild(log, { conn: 1 }).info('hidden');
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(0);
  });

  it('redacts password fields', async () => {
    const { log, lines } = capture('info');
    lazyChild(log, { conn: 2 }).info({ password: 'hunter2', auth_password: 'x' }, 'oops');
    await new Promise((r) => setImmediate(r));
    expect(JSON.stringify(lines)).not.toMatch(/hunter2/);
  });
});
