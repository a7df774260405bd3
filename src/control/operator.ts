// Runs a console control across the whole proxy. Alone, this process applies
// it. In a worker, it goes to the primary, which has every worker apply it (and
// reads the configuration for RELOAD and SET), and answers once all have.
import { ConfigError, type Config } from '../config/index.js';
import type { ProxyContext } from '../context.js';
import type { Logger } from '../log/logger.js';
import type { ControlReply, ControlRequest } from '../workers/messages.js';
import { PendingReplies } from '../workers/replies.js';
import { applyControl, isLocalControl } from './apply.js';
import type { Control, ControlOutcome, Operator, ShutdownMode } from './control.js';
import { prepareReload, withSetting } from './reload.js';

/** What only the process owner can do: read the configuration again, and stop. */
export interface ProcessHooks {
  /** Loads and validates the configuration as at start (file, environment); throws ConfigError. */
  loadConfig(): Config;
  /** Starts the shutdown (after the console's answer is on its way). */
  shutdown(mode: ShutdownMode): void;
}

/** Counts reloads by result (the reload metric). */
export class ReloadCounts {
  ok = 0;
  failed = 0;
}

/** A single-process proxy. */
export class LocalOperator implements Operator {
  constructor(
    private readonly proxy: ProxyContext,
    private readonly hooks: ProcessHooks,
    private readonly log: Logger,
    readonly reloads = new ReloadCounts(),
  ) {}

  /** One reload or SET at a time: two at once would each start from the same running configuration. */
  private reloading: Promise<unknown> = Promise.resolve();

  async run(control: Control): Promise<ControlOutcome> {
    if (isLocalControl(control)) {
      try {
        await applyControl(this.proxy, control, 0);
      } catch (err) {
        return { ok: false, error: (err as Error).message };
      }
      return { ok: true, warnings: [] };
    }
    if (control.kind === 'shutdown') {
      setImmediate(() => this.hooks.shutdown(control.mode));
      return { ok: true, warnings: [] };
    }
    const run = this.reloading.then(() => this.reload(control));
    this.reloading = run.catch(() => undefined);
    return run;
  }

  private async reload(control: Extract<Control, { kind: 'reload' | 'set' }>): Promise<ControlOutcome> {
    let next: Config;
    if (control.kind === 'set') {
      const changed = withSetting(this.proxy.config, control.key, control.value);
      if ('error' in changed) return { ok: false, error: changed.error };
      next = changed;
    } else {
      try {
        next = this.hooks.loadConfig();
      } catch (err) {
        return this.failed(err);
      }
    }
    try {
      const prepared = await prepareReload(this.proxy, next);
      const warnings = prepared.commit();
      this.reloads.ok++;
      for (const w of [...(control.kind === 'reload' ? this.proxy.config.notices : []), ...warnings]) this.log.warn(w);
      this.log.info({ via: control.kind }, 'configuration reloaded');
      return { ok: true, warnings };
    } catch (err) {
      return this.failed(err);
    }
  }

  private failed(err: unknown): ControlOutcome {
    this.reloads.failed++;
    const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
    for (const p of problems) this.log.error({ problem: p }, 'reload failed; keeping the running configuration');
    return { ok: false, error: `reload failed, the running configuration stays: ${problems.join('; ')}` };
  }
}

/** A worker: the primary runs it across all workers. */
export class WorkerOperator implements Operator {
  // PAUSE waits for every server to be released: as long as clients keep them, so no short timeout.
  private readonly replies = new PendingReplies<ControlOutcome>(24 * 3600 * 1000);

  constructor(private readonly send: (msg: ControlRequest) => boolean) {}

  async run(control: Control): Promise<ControlOutcome> {
    const outcome = await this.replies.request((id) => this.send({ type: 'pg-ingress:control-request', id, control }));
    return outcome ?? { ok: false, error: 'the primary process did not answer' };
  }

  /** The primary's answer to one of our requests. */
  onReply(msg: ControlReply): void {
    this.replies.settle(msg.id, msg.outcome);
  }
}
