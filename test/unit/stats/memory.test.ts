// SHOW MEM's rows: object counts under PgBouncer's slab names, bytes with size 1.
import { describe, expect, it } from 'vitest';
import { memoryRows } from '../../../src/stats/memory.js';

describe('memoryRows', () => {
  const rows = memoryRows({ users: 1, databases: 2, pools: 3, clients: 4, servers: 5, serverPreparedStatements: 6, clientPreparedStatements: 7 });
  const row = (name: string) => rows.find((r) => r.name === name)!;

  it('counts objects as used, with nothing free and no size Node could tell', () => {
    expect(rows.slice(0, 7).map((r) => [r.name, r.used])).toEqual([
      ['user_cache', 1],
      ['db_cache', 2],
      ['pool_cache', 3],
      ['server_cache', 5],
      ['client_cache', 4],
      ['server_prepared_statement_cache', 6],
      ['client_prepared_statements', 7],
    ]);
    expect(row('client_cache')).toMatchObject({ size: null, free: 0, memtotal: null });
  });

  it('gives bytes with size 1, so memtotal = size × (used + free) as in PgBouncer', () => {
    const bytes = rows.filter((r) => r.size === 1);
    expect(bytes.map((r) => r.name)).toEqual(expect.arrayContaining(['process_rss', 'v8_heap', 'v8_external', 'v8_array_buffers', 'v8_old_space', 'v8_new_space']));
    for (const r of bytes) expect(r.memtotal).toBe(r.used + r.free);
    expect(row('v8_heap').used).toBeGreaterThan(0);
    expect(row('process_rss').used).toBeGreaterThan(row('v8_heap').used);
  });
});
