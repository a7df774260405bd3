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
import { isMessage, type DatabaseStates } from './messages.js';
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
  /** Bumped by each committed reload; what each worker was given, so one that started meanwhile catches up. */
  private version = 0;
  private readonly given = new WeakMap<Worker, number>();
  /** Per worker, how to give up on its outstanding replies when it exits (else a PAUSE would wait for a dead one). */
  private readonly outstanding = new Map<Worker, Set<() => void>>();
  /** PAUSE and DISABLE as they stand, for a worker that starts later (a restarted one must not serve a paused database). */
  private readonly states = { pausedAll: false, paused: new Set<string>(), disabled: new Set<string>() };

  constructor(
    private running: Config,
    private readonly opts: RelayOptions,
  ) {}

  get config(): Config {
    return this.running;
  }

  /** Takes the messages that are about configuration and controls; false for any other. */
  onMessage(worker: Worker, msg: unknown): boolean {
    if (isMessage(msg, 'pg-ingress:config-request')) {
      // After a reload in flight: a worker forked meanwhile would start on the old configuration.
      void this.reloading.then(() => {
        this.given.set(worker, this.version);
        send(worker, { type: 'pg-ingress:config', config: this.running, states: this.currentStates() });
      });
    }
    else if (isMessage(msg, 'pg-ingress:control-request')) {
      void this.run(msg.control).then((outcome) => send(worker, { type: 'pg-ingress:control-reply', id: msg.id, outcome }));
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
        this.remember(control);
        const workers = this.live();
        const answers = await Promise.all(workers.map((w) => this.ask(this.done, w, (id) => ({ type: 'pg-ingress:control', id, control }))));
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
        this.ask(this.prepared, w, (id) => {
          ids.set(w, id);
          return { type: 'pg-ingress:reload-prepare', id, config };
        }),
      ),
    );
    const problems = answers.flatMap((a, i) => (a === null ? [`worker ${workers[i]!.id} did not answer`] : a.error === null ? [] : [a.error]));
    const allPrepared = problems.length === 0;
    const finish = allPrepared ? 'pg-ingress:reload-commit' : 'pg-ingress:reload-abort';
    await Promise.all(workers.map((w) => this.ask(this.finished, w, (id) => ({ type: finish, id, reload: ids.get(w)! }))));
    if (!allPrepared) return this.failed(problems);
    this.version++;
    for (const w of workers) this.given.set(w, this.version);
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

  /**
   * A worker serves now: it gets the PAUSE/DISABLE state as it stands, and the
   * configuration if a reload committed after it was given its own.
   */
  workerReady(worker: Worker): void {
    send(worker, { type: 'pg-ingress:states', states: this.currentStates() });
    void this.serialized(async () => {
      if (this.given.get(worker) === this.version || !worker.isConnected()) return;
      let reload = 0;
      const prepared = await this.ask(this.prepared, worker, (id) => {
        reload = id;
        return { type: 'pg-ingress:reload-prepare', id, config: this.running };
      });
      const ok = prepared !== null && prepared.error === null;
      await this.ask(this.finished, worker, (id) => ({ type: ok ? 'pg-ingress:reload-commit' : 'pg-ingress:reload-abort', id, reload }));
      if (!ok) {
        this.opts.log.error({ worker: worker.id, problem: prepared?.error ?? 'no answer' }, 'a worker that started during a reload could not take the new configuration');
        return;
      }
      this.given.set(worker, this.version);
      this.opts.log.info({ worker: worker.id }, 'a worker that started during a reload took the new configuration');
    });
  }

  /** A worker exited: its outstanding replies will never come. */
  workerGone(worker: Worker): void {
    for (const giveUp of this.outstanding.get(worker) ?? []) giveUp();
    this.outstanding.delete(worker);
  }

  /** Sends `message(id)` to `worker` and waits for the reply with that id (null: no answer, or the worker exited). */
  private ask<T>(replies: PendingReplies<T>, worker: Worker, message: (id: number) => object): Promise<T | null> {
    let sentId = 0;
    const reply = replies.request((id) => {
      sentId = id;
      // Thrown: the request settles at once with no answer.
      if (!worker.isConnected()) throw new Error(`worker ${worker.id} is gone`);
      worker.send(message(id));
    });
    const giveUp = (): void => void replies.settle(sentId, null);
    let pending = this.outstanding.get(worker);
    if (!pending) this.outstanding.set(worker, (pending = new Set()));
    pending.add(giveUp);
    return reply.finally(() => pending.delete(giveUp));
  }

  /** Keeps the PAUSE/DISABLE state a control leaves, as every worker's PoolManager will have it. */
  private remember(control: Control): void {
    const { states } = this;
    if (control.kind === 'pause' || control.kind === 'kill') {
      if (control.database === null) states.pausedAll = true;
      else states.paused.add(control.database);
    } else if (control.kind === 'resume') {
      if (control.database === null) {
        states.pausedAll = false;
        states.paused.clear();
      } else states.paused.delete(control.database);
    } else if (control.kind === 'disable') states.disabled.add(control.database);
    else if (control.kind === 'enable') states.disabled.delete(control.database);
  }

  private currentStates(): DatabaseStates {
    return { pausedAll: this.states.pausedAll, paused: [...this.states.paused], disabled: [...this.states.disabled] };
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

/** Sends if the worker is still connected (a send to one that is gone fails). */
function send(worker: Worker, message: object): void {
  if (worker.isConnected()) worker.send(message);
}
