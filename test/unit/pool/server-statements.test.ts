// ServerStatements: which renamed statements a server holds (an LRU under a
// cap), and what to do with each ParseComplete / CloseComplete it will answer.
import { describe, expect, it } from 'vitest';
import { Answer, ServerStatements } from '../../../src/pool/server-statements.js';

describe('ServerStatements', () => {
  it('knows the statements it was told about, and touch() marks one used', () => {
    const s = new ServerStatements(10);
    expect(s.touch('a')).toBe(false);
    expect(s.add('a', null)).toEqual([]);
    expect(s.has('a')).toBe(true);
    expect(s.touch('a')).toBe(true);
    expect(s.size).toBe(1);
  });

  it('evicts the least recently used past its cap, never the one being added or the protected one', () => {
    const s = new ServerStatements(2);
    s.add('a', null);
    s.add('b', null);
    s.touch('a'); // b is now the least recently used
    expect(s.add('c', null)).toEqual(['b']);
    expect([s.has('a'), s.has('b'), s.has('c')]).toEqual([true, false, true]);
    // 'a' is the oldest but protected: 'c' goes instead.
    expect(s.add('d', 'a')).toEqual(['c']);
    expect([s.has('a'), s.has('d')]).toEqual([true, true]);
  });

  it('answers in the order the messages were sent, one queue per answer type', () => {
    const s = new ServerStatements(10);
    s.expectParse(Answer.Swallow, 0, 'hidden');
    s.expectClose(Answer.PatchToParseComplete, 0);
    s.expectParse(Answer.Forward, 0, 'mine');
    expect(s.idle).toBe(false);
    expect(s.onCloseComplete()).toBe(Answer.PatchToParseComplete);
    expect(s.onParseComplete()).toBe(Answer.Swallow);
    expect(s.onParseComplete()).toBe(Answer.Forward);
    expect(s.idle).toBe(true);
    // An answer nobody expects is the client's own: forwarded.
    expect(s.onParseComplete()).toBe(Answer.Forward);
    expect(s.onCloseComplete()).toBe(Answer.Forward);
  });

  it('a batch that ReadyForQuery ends unanswered failed: its Parse statements are forgotten, later batches kept', () => {
    const s = new ServerStatements(10);
    s.add('failed', null);
    s.expectParse(Answer.Forward, 0, 'failed');
    s.expectClose(Answer.Swallow, 0);
    s.add('later', null);
    s.expectParse(Answer.Forward, 1, 'later');
    s.onReady(1); // batch 0 is done, and its answers never came (an error skipped them)
    expect(s.has('failed')).toBe(false);
    expect(s.has('later')).toBe(true);
    expect(s.idle).toBe(false);
    expect(s.onParseComplete()).toBe(Answer.Forward); // batch 1's
    s.onReady(2);
    expect(s.idle).toBe(true);
    expect(s.has('later')).toBe(true); // answered: kept
  });

  it('reports the failed Parses a client sent, once, with its own name; hidden Parses are not reported', () => {
    const s = new ServerStatements(10);
    s.add('pgi_a', null);
    s.expectParse(Answer.Forward, 0, 'pgi_a', 'mine');
    s.add('pgi_b', null);
    s.expectParse(Answer.Swallow, 0, 'pgi_b'); // a hidden re-prepare: no client name
    expect(s.takeFailedParses()).toBeNull();
    s.onReady(1);
    expect(s.takeFailedParses()).toEqual([['mine', 'pgi_a']]);
    expect(s.takeFailedParses()).toBeNull();
  });

  it('clear() forgets every statement (DISCARD ALL, DEALLOCATE ALL)', () => {
    const s = new ServerStatements(10);
    s.add('a', null);
    s.add('b', null);
    s.clear();
    expect(s.size).toBe(0);
    expect(s.touch('a')).toBe(false);
  });

  it('is trusted until a client changed its statements by SQL', () => {
    const s = new ServerStatements(10);
    expect(s.trusted).toBe(true);
    s.distrust();
    expect(s.trusted).toBe(false);
    s.clear();
    expect(s.trusted).toBe(false); // a DISCARD ALL later does not make it trusted again
  });
});
