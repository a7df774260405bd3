// What a worker and the primary's ledger say to each other (over the cluster
// IPC channel, in order). A worker speaks only when it opens or closes a
// server, or admits or drops a client.
import type { ClientRefusal, ClientTerms, PoolId, PoolTerms, Pressure, SlotKind } from './ledger.js';

export const BUDGET = 'pg-ingress:budget';
export const BUDGET_REPLY = 'pg-ingress:budget-reply';

export type ToLedger =
  | { type: typeof BUDGET; op: 'ask'; id: PoolId; terms: PoolTerms; kind: SlotKind; count: number; since: number }
  | { type: typeof BUDGET; op: 'withdraw'; pool: string; count: number }
  | { type: typeof BUDGET; op: 'release'; pool: string; count: number }
  | { type: typeof BUDGET; op: 'admit'; id: number; terms: ClientTerms }
  | { type: typeof BUDGET; op: 'left'; database: string; user: string };

export type FromLedger =
  | { type: typeof BUDGET_REPLY; op: 'granted'; pool: string; kind: SlotKind; count: number }
  | { type: typeof BUDGET_REPLY; op: 'denied'; pool: string; count: number }
  | { type: typeof BUDGET_REPLY; op: 'pressure'; pressures: Pressure[] }
  | { type: typeof BUDGET_REPLY; op: 'admitted'; id: number; refusal: ClientRefusal | null };

export function isToLedger(msg: unknown): msg is ToLedger {
  return typeof msg === 'object' && msg !== null && (msg as { type?: unknown }).type === BUDGET;
}

export function isFromLedger(msg: unknown): msg is FromLedger {
  return typeof msg === 'object' && msg !== null && (msg as { type?: unknown }).type === BUDGET_REPLY;
}
