// Child process of the memory benchmark: opens N authenticated TLS connections
// with node-postgres (in batches, so the proxy is not flooded), reports on
// stdout, keeps them idle until its stdin says "close" (or closes), then ends them.
// Input: env IDLE_CLIENTS = JSON { port, database, user, count, batch }, PGPASSWORD.
import pg from 'pg';

interface Input {
  port: number;
  database: string;
  user: string;
  count: number;
  batch: number;
}

const input = JSON.parse(process.env.IDLE_CLIENTS ?? '{}') as Input;
const say = (o: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(o)}\n`);

const clients: pg.Client[] = [];
let failed = 0;
let firstError: string | null = null;
let lostAfterConnect = 0;

for (let done = 0; done < input.count; done += input.batch) {
  const n = Math.min(input.batch, input.count - done);
  await Promise.all(
    Array.from({ length: n }, async () => {
      const c = new pg.Client({
        host: '127.0.0.1',
        port: input.port,
        database: input.database,
        user: input.user,
        password: process.env.PGPASSWORD,
        ssl: { rejectUnauthorized: false },
        connectionTimeoutMillis: 120_000,
      });
      c.on('error', () => lostAfterConnect++);
      try {
        await c.connect();
        clients.push(c);
      } catch (err) {
        failed++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }),
  );
  say({ progress: clients.length + failed, connected: clients.length, failed });
}
// One round trip on a sample proves the sessions work (and finishes any lazy setup).
await Promise.all(clients.slice(0, 10).map((c) => c.query('SELECT 1').catch(() => undefined)));
say({ ready: true, connected: clients.length, failed, firstError });

process.stdin.setEncoding('utf8');
let input_ = '';
await new Promise<void>((resolve) => {
  process.stdin.on('data', (s: string) => {
    input_ += s;
    if (input_.includes('close')) resolve();
  });
  process.stdin.on('end', () => resolve());
});
for (let i = 0; i < clients.length; i += 500) await Promise.all(clients.slice(i, i + 500).map((c) => c.end().catch(() => undefined)));
say({ closed: true, lostAfterConnect });
process.exit(0);
