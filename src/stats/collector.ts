// Where statistics come from when someone asks (a scrape, SHOW POOLS): this
// process alone, or every worker through the primary. Either way the answer is
// one merged view.
import type { Worker } from 'node:cluster';
import { isMessage } from '../workers/messages.js';
import { PendingReplies } from '../workers/replies.js';
import { mergeSnapshots, type ClusterStats, type ReloadTotals } from './merge.js';
import type { WorkerSnapshot } from './snapshot.js';

export interface StatsCollector {
  collect(): Promise<ClusterStats>;
}

/** How long the primary waits for each worker's snapshot; a worker that misses it is left out. */
export const SNAPSHOT_TIMEOUT_MS = 1000;

/** A single-process proxy: its own snapshot is the whole picture. */
export class LocalCollector implements StatsCollector {
  constructor(
    private readonly snapshot: () => WorkerSnapshot,
    private readonly reloads?: ReloadTotals,
  ) {}

  collect(): Promise<ClusterStats> {
    return Promise.resolve({ ...mergeSnapshots([this.snapshot()]), reloads: this.reloads && { ...this.reloads } });
  }
}

/**
 * In a worker: asks the primary for every worker's snapshot. If the primary
 * does not answer in time, this worker's own snapshot stands in.
 */
export class WorkerCollector implements StatsCollector {
  private readonly replies = new PendingReplies<WorkerSnapshot[]>(SNAPSHOT_TIMEOUT_MS * 2);
  private readonly onMessage = (msg: unknown): void => {
    if (isMessage(msg, 'pg-ingress:cluster-stats-reply')) this.replies.settle(msg.id, msg.snapshots);
  };

  constructor(private readonly snapshot: () => WorkerSnapshot) {
    process.on('message', this.onMessage);
  }

  async collect(): Promise<ClusterStats> {
    const all = await this.replies.request((id) => process.send!({ type: 'pg-ingress:cluster-stats-request', id }));
    return mergeSnapshots(all && all.length > 0 ? all : [this.snapshot()]);
  }

  close(): void {
    process.off('message', this.onMessage);
  }
}

/** In the primary: asks each live worker for its snapshot, in parallel. */
export class PrimaryCollector implements StatsCollector {
  private readonly replies = new PendingReplies<WorkerSnapshot>(SNAPSHOT_TIMEOUT_MS);

  /**
   * @param workers the workers to ask: those that are up and serving
   * @param reloads the primary's reload counts (it decides them)
   */
  constructor(
    private readonly workers: () => Iterable<Worker>,
    private readonly reloads?: () => ReloadTotals,
  ) {}

  /** Feed it every message from a worker; it takes the replies. */
  onWorkerMessage(msg: unknown): void {
    if (isMessage(msg, 'pg-ingress:stats-reply')) this.replies.settle(msg.id, msg.snapshot);
  }

  async snapshots(): Promise<WorkerSnapshot[]> {
    const workers = [...this.workers()].filter((w) => w.isConnected());
    const answers = await Promise.all(workers.map((w) => this.replies.request((id) => w.send({ type: 'pg-ingress:stats-request', id }))));
    return answers.filter((s): s is WorkerSnapshot => s !== null);
  }

  async collect(): Promise<ClusterStats> {
    const reloads = this.reloads?.();
    return { ...mergeSnapshots(await this.snapshots()), reloads: reloads && { ...reloads } };
  }
}
