// Node/V8 options for the worker processes. An idle client costs a proxy
// mostly memory, and V8 lets its young generation grow to 16 MB per semi-space
// under the allocation bursts of many logins, then keeps it: capped at 4 MB
// the idle RSS per TLS client drops by about a quarter at 1 000 clients, with
// no measurable cost per transaction (the relay allocates little per message).

export const WORKER_SEMI_SPACE_MB = 4;

/** The worker's execArgv: the primary's, plus our semi-space cap unless the operator chose one. */
export function workerExecArgv(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const chosen = [...execArgv, ...(nodeOptions ?? '').split(/\s+/)].some((arg) => /^--max[-_]semi[-_]space[-_]size(=|$)/.test(arg));
  return chosen ? [...execArgv] : [...execArgv, `--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`];
}
