// SHOW MEM for a Node process. PgBouncer lists its slab allocators (name,
// size of one object, used, free, memtotal); Node has no slabs, so the rows are
// of two kinds, both in PgBouncer's columns:
// - object counts under PgBouncer's slab names (client_cache, server_cache, …):
//   used = objects alive, free = 0 (nothing is kept for reuse: the garbage
//   collector frees them), size and memtotal NULL (V8 does not tell an
//   object's size; their memory is inside the heap rows);
// - bytes from process.memoryUsage() and v8.getHeapSpaceStatistics(): size = 1
//   (the unit is a byte), so memtotal = size × (used + free) as in PgBouncer.
import v8 from 'node:v8';

export interface MemoryRow {
  name: string;
  /** Bytes of one item: 1 for the byte rows, null where Node cannot say. */
  size: number | null;
  used: number;
  free: number;
  memtotal: number | null;
}

/** The objects of this process that pg-ingress can count. */
export interface ObjectCounts {
  users: number;
  databases: number;
  pools: number;
  /** Accepted client connections, logging in or logged in (PgBouncer's client_cache counts both). */
  clients: number;
  servers: number;
  serverPreparedStatements: number;
  clientPreparedStatements: number;
}

export function memoryRows(counts: ObjectCounts): MemoryRow[] {
  const objects = (name: string, used: number): MemoryRow => ({ name, size: null, used, free: 0, memtotal: null });
  const bytes = (name: string, used: number, total = used): MemoryRow => ({ name, size: 1, used, free: Math.max(0, total - used), memtotal: Math.max(total, used) });
  const mem = process.memoryUsage();
  return [
    objects('user_cache', counts.users),
    objects('db_cache', counts.databases),
    objects('pool_cache', counts.pools),
    objects('server_cache', counts.servers),
    objects('client_cache', counts.clients),
    objects('server_prepared_statement_cache', counts.serverPreparedStatements),
    objects('client_prepared_statements', counts.clientPreparedStatements),
    bytes('process_rss', mem.rss),
    bytes('v8_heap', mem.heapUsed, mem.heapTotal),
    bytes('v8_external', mem.external),
    bytes('v8_array_buffers', mem.arrayBuffers),
    ...v8.getHeapSpaceStatistics().map((s) => bytes(`v8_${s.space_name}`, s.space_used_size, s.space_size)),
  ];
}
