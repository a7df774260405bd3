import { afterEach, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { createLogger } from '../../../src/log/logger.js';
import { installSafetyNet, removeSafetyNet } from '../../../src/process/safety-net.js';
import { processCounters } from '../../../src/stats/process-counters.js';

class Lines extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    for (const l of chunk.toString('utf8').split('\n')) if (l) this.lines.push(JSON.parse(l) as Record<string, unknown>);
    done();
  }
}

describe('last-resort handler', () => {
  afterEach(() => removeSafetyNet());

  it('logs and counts an uncaught exception with its connection id, and a rejection, without exiting', () => {
    const out = new Lines();
    installSafetyNet(createLogger('info', out));
    const before = processCounters.uncaughtFaults;
    const err = Object.assign(new Error('boom in a timer'), { conn: 42 });
    (process.emit as (event: string, ...args: unknown[]) => boolean)('uncaughtException', err, 'uncaughtException');
    process.emit('unhandledRejection', new Error('rejected'), Promise.resolve());
    expect(processCounters.uncaughtFaults).toBe(before + 2);
    expect(out.lines).toHaveLength(2);
    expect(out.lines[0]).toMatchObject({ kind: 'uncaughtException', conn: 42 });
    expect(String(out.lines[0]!.err)).toContain('boom in a timer');
    expect(out.lines[1]).toMatchObject({ kind: 'unhandledRejection' });
  });

  it('installs once however often it is called', () => {
    const out = new Lines();
    const log = createLogger('info', out);
    installSafetyNet(log);
    installSafetyNet(log);
    const before = processCounters.uncaughtFaults;
    (process.emit as (event: string, ...args: unknown[]) => boolean)('uncaughtException', new Error('once'), 'uncaughtException');
    expect(processCounters.uncaughtFaults).toBe(before + 1);
    expect(out.lines).toHaveLength(1);
  });
});
