// Whether workers listen on the port themselves (SO_REUSEPORT: the kernel
// spreads new connections across them) instead of receiving each accepted
// socket from the primary over IPC (node:cluster's round-robin). Node has
// `reusePort` since 22.12 and 23.1; the Docker image runs 24. Cancels do not
// care which worker accepts them: a cancel key names its worker, and the
// primary relays it there.

export type ReusePortSetting = 'auto' | 'off';

/** Node ≥ 22.12 (and 23.1 on the 23 line) can listen with `reusePort`. */
export function nodeHasReusePort(version = process.versions.node): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major >= 24 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

/**
 * A worker listens with reusePort by default (`auto`) where Node has it, and
 * never with `off`. Never for port 0 either: each worker would get a port of its own.
 */
export function listenWithReusePort(setting: ReusePortSetting, isWorker: boolean, port: number, version = process.versions.node): boolean {
  if (!isWorker || port === 0 || setting === 'off') return false;
  return nodeHasReusePort(version);
}
