// The primary's side of configuration and controls. It holds the running
// configuration (read at start, and again on SIGHUP or RELOAD) and gives it to
// each worker that starts. A control from a worker's console, or from a signal,
// is applied by every worker and answered once all have; a new configuration is
// prepared in every worker and committed only if all of them could, so the
// workers switch together or not at all.
import type { Worker } from 'node:cluster';
import { ConfigError, type Config } from '../config/index.js';
import type { Control, ControlOutcome, ShutdownMode } from '../control/control.js';
import { ReloadCounts } from '../control/operator.js';
import { keepRestartOnly, withSetting } from '../control/reload.js';
import { setLogLevel, type Logger } from '../log/logger.js';
import { isMessage } from './messages.js';
import { PendingReplies } from './replies.js';

/** PAUSE and WAIT_CLOSE wait for clients to release servers: as long as that takes. */
const CONTROL_TIMEOUT_MS = 24 * 3600 * 1000;
/** Preparing a configuration reads certificate files; committing cannot fail. */
const RELOAD_STEP_TIMEOUT_MS = 30_000;

export interface RelayOptions {
  /** The workers up now. */
  workers: () => Iterable<Worker>;
  /** Reads the configuration again (file, environment); throws ConfigError. */
  loadConfig: () => Config;
  shutdown: (mode: ShutdownMode) => void;
  log: Logger;
}

export class ControlRelay {
  readonly reloads = new ReloadCounts();
  // Replies wrap their error: PendingReplies' null means "no answer".
  private readonly done = new PendingReplies<{ error: string | null }>(CONTROL_TIMEOUT_MS);
  private readonly prepared = new PendingReplies<{ error: string | null }>(RELOAD_STEP_TIMEOUT_MS);
  private readonly finished = new PendingReplies<true>(RELOAD_STEP_TIMEOUT_MS);
  /** One reload at a time: two at once could commit in different orders in different workers. */
  private reloading: Promise<unknown> = Promise.resolve();

  constructor(
    private running: Config,
    private readonly opts: RelayOptions,
  ) {}

  get config(): Config {
    return this.running;
  }

  /** Takes the messages that are about configuration and controls; false for any other. */
  onMessage(worker: Worker, msg: unknown): boolean {
    if (isMessage(msg, 'pg-ingress:config-request')) worker.send({ type: 'pg-ingress:config', config: this.running });
    else if (isMessage(msg, 'pg-ingress:control-request')) {
      void this.run(msg.control).then((outcome) => {
        if (worker.isConnected()) worker.send({ type: 'pg-ingress:control-reply', id: msg.id, outcome });
      });
    } else if (isMessage(msg, 'pg-ingress:control-done')) this.done.settle(msg.id, { error: msg.error });
    else if (isMessage(msg, 'pg-ingress:reload-prepared')) this.prepared.settle(msg.id, { error: msg.error });
    else if (isMessage(msg, 'pg-ingress:reload-done')) this.finished.settle(msg.id, true);
    else return false;
    return true;
  }

  /** Runs a control across every worker. */
  async run(control: Control): Promise<ControlOutcome> {
    switch (control.kind) {
      case 'shutdown':
        setImmediate(() => this.opts.shutdown(control.mode));
        return { ok: true, warnings: [] };
      case 'reload':
      case 'set':
        return this.serialized(() => this.reload(control));
      default: {
        const workers = this.live();
        const answers = await Promise.all(workers.map((w) => this.done.request((id) => w.send({ type: 'pg-ingress:control', id, control }))));
        // A worker that went away meanwhile has nothing left to apply it to.
        const failed = answers.flatMap((a, i) => (a === null ? (workers[i]!.isConnected() ? [`worker ${workers[i]!.id} did not answer`] : []) : a.error === null ? [] : [a.error]));
        return failed.length === 0 ? { ok: true, warnings: [] } : { ok: false, error: failed.join('; ') };
      }
    }
  }

  private async reload(control: Extract<Control, { kind: 'reload' | 'set' }>): Promise<ControlOutcome> {
    const { log } = this.opts;
    let next: Config;
    try {
      if (control.kind === 'set') {
        const changed = withSetting(this.running, control.key, control.value);
        if ('error' in changed) return { ok: false, error: changed.error };
        next = changed;
      } else next = this.opts.loadConfig();
    } catch (err) {
      return this.failed(err instanceof ConfigError ? err.problems : [(err as Error).message]);
    }
    const { config, warnings } = keepRestartOnly(this.running, next);
    const workers = this.live();
    const ids = new Map<Worker, number>();
    const answers = await Promise.all(
      workers.map((w) =>
        this.prepared.request((id) => {
          ids.set(w, id);
          return w.send({ type: 'pg-ingress:reload-prepare', id, config });
        }),
      ),
    );
    const problems = answers.flatMap((a, i) => (a === null ? [`worker ${workers[i]!.id} did not answer`] : a.error === null ? [] : [a.error]));
    const allPrepared = problems.length === 0;
    const finish = allPrepared ? 'pg-ingress:reload-commit' : 'pg-ingress:reload-abort';
    await Promise.all(workers.map((w) => this.finished.request(() => w.send({ type: finish, id: ids.get(w)! }))));
    if (!allPrepared) return this.failed(problems);
    this.running = config;
    this.reloads.ok++;
    setLogLevel(log, config.log_level);
    for (const w of [...(control.kind === 'reload' ? config.notices : []), ...warnings]) log.warn(w);
    log.info({ via: control.kind, workers: workers.length }, 'configuration reloaded in every worker');
    return { ok: true, warnings };
  }

  private failed(problems: readonly string[]): ControlOutcome {
    this.reloads.failed++;
    for (const p of problems) this.opts.log.error({ problem: p }, 'reload failed; every worker keeps the running configuration');
    return { ok: false, error: `reload failed, the running configuration stays: ${problems.join('; ')}` };
  }

  private live(): Worker[] {
    return [...this.opts.workers()].filter((w) => w.isConnected());
  }

  private serialized<T>(task: () => Promise<T>): Promise<T> {
    const run = this.reloading.then(task, task);
    this.reloading = run.catch(() => undefined);
    return run;
  }
}
