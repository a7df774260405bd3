// The demo's printed commands must survive a paste: every value quoted for the
// shell and for libpq when (and only when) it needs it.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { conninfoValue, psqlCommand, shellWord } from '../../../src/demo/instructions.js';

/** What sh makes of one word: the argument a program receives. */
const asShellSees = (word: string): string => execFileSync('sh', ['-c', `printf '%s' ${word}`], { encoding: 'utf8' });

describe('demo instructions', () => {
  it('quotes shell words so sh hands the program the value unchanged', () => {
    for (const value of ['plain-word_1', 'two words', "it's", 'a $HOME `x` "q" \\ !', "host=x sslrootcert='/tmp/a b/ca.pem'"]) {
      expect(asShellSees(shellWord(value))).toBe(value);
    }
    expect(shellWord('abc-_XYZ')).toBe('abc-_XYZ');
  });

  it('quotes libpq values only when they need it', () => {
    expect(conninfoValue('/tmp/pg-ingress-demo-x/ca.pem')).toBe('/tmp/pg-ingress-demo-x/ca.pem');
    expect(conninfoValue('/tmp/a b/ca.pem')).toBe("'/tmp/a b/ca.pem'");
    expect(conninfoValue("it's\\")).toBe("'it\\'s\\\\'");
    expect(conninfoValue('')).toBe("''");
  });

  it('builds a verify-full psql command with the password in the environment', () => {
    const command = psqlCommand(
      { port: 6432, database: 'demo', user: 'demo', password: 'pw-_1', caFile: '/tmp/d/ca.pem', metricsUrl: null, serverVersion: '17', dir: '/tmp/d' },
      'pgbouncer',
      'SHOW POOLS',
    );
    expect(command).toBe('PGPASSWORD=pw-_1 psql "host=localhost port=6432 dbname=pgbouncer user=demo sslmode=verify-full sslrootcert=/tmp/d/ca.pem" -c "SHOW POOLS"');
  });
});
