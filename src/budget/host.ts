// The primary's side of the budget: one Ledger for all workers, fed by their
// IPC messages, answering each worker on its own channel. A worker that exits
// gives back everything it held at once.
import { Ledger } from './ledger.js';
import { BUDGET_REPLY, type FromLedger, type ToLedger } from './messages.js';

/** How often queued asks are looked at again, for reserve_pool_timeout (the janitor's pace). */
const TICK_MS = 250;

export class BudgetHost {
  readonly ledger: Ledger;
  private readonly timer: NodeJS.Timeout;

  /** @param send delivers a message to one worker; false or a throw when that worker is gone (ignored: its exit cleans up) */
  constructor(private readonly send: (worker: number, msg: FromLedger) => void) {
    this.ledger = new Ledger({
      granted: (worker, pool, kind, count) => this.reply(worker, { type: BUDGET_REPLY, op: 'granted', pool, kind, count }),
      denied: (worker, pool, count) => this.reply(worker, { type: BUDGET_REPLY, op: 'denied', pool, count }),
      pressure: (worker, pressures) => this.reply(worker, { type: BUDGET_REPLY, op: 'pressure', pressures }),
    });
    this.timer = setInterval(() => this.ledger.tick(), TICK_MS);
    this.timer.unref();
  }

  onMessage(worker: number, msg: ToLedger): void {
    const { ledger } = this;
    switch (msg.op) {
      case 'ask':
        return ledger.ask(worker, msg.id, msg.terms, msg.kind, msg.count, msg.since);
      case 'withdraw':
        return ledger.withdraw(worker, msg.pool, msg.count);
      case 'release':
        return ledger.release(worker, msg.pool, msg.count);
      case 'admit':
        return this.reply(worker, { type: BUDGET_REPLY, op: 'admitted', id: msg.id, refusal: ledger.admit(worker, msg.terms) });
      case 'left':
        return ledger.clientLeft(worker, msg.database, msg.user);
    }
  }

  workerGone(worker: number): void {
    this.ledger.workerGone(worker);
  }

  close(): void {
    clearInterval(this.timer);
  }

  private reply(worker: number, msg: FromLedger): void {
    try {
      this.send(worker, msg);
    } catch {
      // The worker's channel closed: its exit returns its slots.
    }
  }
}
