// Framer/relay microbenchmark, no network: a realistic stream of server
// messages cut into 16 KB chunks (as sockets deliver them) goes through the
// proxy's Framer into a sink that does what ServerConnection's relay does:
// count frames, track ReadyForQuery status, and coalesce consecutive frames of
// a chunk into one forwarded slice with the relay's own FrameBatch.
import { commandComplete, dataRow, readyForQuery, rowDescription, type FieldDescription } from '../../src/protocol/backend.js';
import { FrameBatch } from '../../src/protocol/frame-batch.js';
import { Framer, type FrameSink } from '../../src/protocol/framer.js';

const CHUNK = 16 * 1024;
const Z = 0x5a;

/** One query's response: T, D×rows, C, Z — and how many messages it is (columns of table 16384, as from a real table). */
function response(columns: FieldDescription[], rows: number, row: (i: number) => string[]): { bytes: Buffer; messages: number } {
  const parts = [rowDescription(columns.map((c, i) => ({ ...c, tableOid: 16384, columnNumber: i + 1 })))];
  for (let i = 0; i < rows; i++) parts.push(dataRow(row(i)));
  parts.push(commandComplete(`SELECT ${rows}`), readyForQuery('I'));
  return { bytes: Buffer.concat(parts), messages: rows + 3 };
}

const INT4 = { typeOid: 23, typeLength: 4 };
const SCENARIOS: { name: string; make: () => { bytes: Buffer; messages: number } }[] = [
  { name: 'pgbench -S reply (T, 1 D, C, Z)', make: () => response([{ name: 'abalance', ...INT4 }], 1, () => ['-4213']) },
  {
    name: '100-row result, 4 columns (T, 100 D, C, Z)',
    make: () =>
      response(
        [{ name: 'aid', ...INT4 }, { name: 'bid', ...INT4 }, { name: 'abalance', ...INT4 }, { name: 'filler', typeOid: 1042, typeLength: -1 }],
        100,
        (i) => [String(100_000 + i), String(1 + (i % 10)), String((i * 7919) % 5000 - 2500), ' '.repeat(84)],
      ),
  },
  { name: '1 row of 200 kB (frames span chunks)', make: () => response([{ name: 'doc', typeOid: 25, typeLength: -1 }], 1, () => ['x'.repeat(200_000)]) },
];

class RelaySink implements FrameSink {
  frames = 0;
  readies = 0;
  status = 0;
  forwardedBytes = 0;
  forwards = 0;
  readonly batch = new FrameBatch();
  private readonly target = {
    write: (b: Buffer): void => {
      this.forwards++;
      this.forwardedBytes += b.length;
    },
  };

  onFrame(type: number, buf: Buffer, start: number, end: number): void {
    this.frames++;
    if (type === Z) {
      this.status = buf[start + 5]!;
      this.readies++;
    }
    this.batch.add(this.target, buf, start, end);
  }
}

export interface FramerResult {
  name: string;
  mbPerSec: number;
  nsPerMessage: number;
  messages: number;
}

export function runFramerBench(secondsPerScenario: number): FramerResult[] {
  const results: FramerResult[] = [];
  for (const scenario of SCENARIOS) {
    const one = scenario.make();
    const repeat = Math.max(1, Math.ceil((4 << 20) / one.bytes.length));
    const stream = Buffer.concat(Array.from({ length: repeat }, () => one.bytes));
    const messagesPerPass = one.messages * repeat;
    // Separate buffers per chunk, as a socket delivers them.
    const chunks: Buffer[] = [];
    for (let i = 0; i < stream.length; i += CHUNK) chunks.push(Buffer.from(stream.subarray(i, i + CHUNK)));
    const framer = new Framer(1 << 30);
    const sink = new RelaySink();
    const pass = (): void => {
      for (const chunk of chunks) {
        sink.batch.begin(chunk);
        framer.push(chunk, sink);
        sink.batch.finish();
      }
    };
    for (let i = 0; i < 3; i++) pass(); // warm-up (JIT)
    sink.frames = sink.readies = sink.forwardedBytes = 0;
    let passes = 0;
    const t0 = process.hrtime.bigint();
    const budget = BigInt(Math.round(secondsPerScenario * 1e9));
    let elapsed = 0n;
    do {
      pass();
      passes++;
      elapsed = process.hrtime.bigint() - t0;
    } while (elapsed < budget);
    const ns = Number(elapsed);
    if (sink.frames !== messagesPerPass * passes || sink.readies !== repeat * passes || sink.forwardedBytes !== stream.length * passes || sink.status !== 0x49) {
      throw new Error(`framer bench "${scenario.name}": sink saw ${sink.frames} frames / ${sink.forwardedBytes} bytes, expected ${messagesPerPass * passes} / ${stream.length * passes}`);
    }
    results.push({ name: scenario.name, mbPerSec: (stream.length * passes) / (ns / 1e9) / 1e6, nsPerMessage: ns / (messagesPerPass * passes), messages: messagesPerPass * passes });
  }
  return results;
}
