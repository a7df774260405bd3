// Admin console commands without a network: parsing, privileges, secrets.
import { describe, expect, it } from 'vitest';
import { runCommand, type CommandContext } from '../../../src/admin/commands.js';
import { loadConfig } from '../../../src/config/index.js';
import { mergeSnapshots } from '../../../src/stats/merge.js';

const config = loadConfig({ file: null, env: {}, overrides: { auth_password: 'sekret-auth-pw', admin_users: ['ops'] } });
const ctx = (isAdmin: boolean): CommandContext => ({ config, operator: { run: async () => ({ ok: true, warnings: [] }) }, isAdmin, stats: async () => mergeSnapshots([]), statsPeriodSeconds: 60 });
const sqlstate = (b: Buffer): string | null => (b[0] === 0x45 ? /C([0-9A-Z]{5})\0/.exec(b.toString('latin1'))![1]! : null);

describe('runCommand', () => {
  it('is case-insensitive and tolerates spacing', async () => {
    const out = await runCommand('  show   pools ', ctx(false));
    expect(String.fromCharCode(out[0]!)).toBe('T'); // RowDescription
    expect(out.subarray(-10).toString('latin1')).toContain('SHOW\0');
  });

  it('answers an unknown command with 42601 and PgBouncer’s message', async () => {
    const out = await runCommand('SHOW NONSENSE', ctx(true));
    expect(sqlstate(out)).toBe('42601');
    expect(out.toString('utf8')).toContain("invalid command 'SHOW NONSENSE', use SHOW HELP;");
    expect(sqlstate(await runCommand('DROP TABLE x', ctx(true)))).toBe('42601');
  });

  it('refuses controls to stats users (42501) without running them; admins get them run, SUSPEND is unsupported (0A000)', async () => {
    const ran: string[] = [];
    const operator = { run: async (c: { kind: string }) => (ran.push(c.kind), { ok: true as const, warnings: [] }) };
    expect(sqlstate(await runCommand('RELOAD', { ...ctx(false), operator }))).toBe('42501');
    expect(ran).toEqual([]);
    const out = await runCommand('reload', { ...ctx(true), operator });
    expect(sqlstate(out)).toBeNull();
    expect(out.toString('latin1')).toContain('RELOAD\0');
    expect(sqlstate(await runCommand('SET default_pool_size = 5', { ...ctx(true), operator }))).toBeNull();
    expect(ran).toEqual(['reload', 'set']);
    expect(sqlstate(await runCommand('SUSPEND', ctx(true)))).toBe('0A000');
  });

  it('never prints a password in SHOW CONFIG', async () => {
    const out = (await runCommand('SHOW CONFIG', ctx(true))).toString('utf8');
    expect(out).toContain('listen_port\0');
    expect(out).not.toContain('sekret-auth-pw');
    expect(out).not.toContain('auth_password');
  });

  it('answers an empty statement with EmptyQueryResponse', async () => {
    expect(String.fromCharCode((await runCommand('   ', ctx(false)))[0]!)).toBe('I');
  });
});
