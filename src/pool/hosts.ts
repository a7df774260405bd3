// Which host a new server connection goes to when a database names several
// (`host=a,b,c`, with one port for all or one per host), as PgBouncer's
// dns_connect chooses it per pool: `round-robin` moves to the next host for
// every new connection; `disable` stays on one host until a connection to it
// fails. One difference: PgBouncer fails that attempt and moves on at the next
// one, pg-ingress tries the next host within the same attempt, so a dead host
// costs the waiting client a connect timeout at most, not an error.
import type { LoadBalanceHosts } from '../config/schema.js';

export interface HostPort {
  host: string;
  port: number;
}

/** The hosts of a (templated) host list with their ports; the schema checked that the counts match. */
export function parseHosts(host: string, ports: readonly number[]): HostPort[] {
  return host.split(',').map((h, i) => ({ host: h, port: ports.length === 1 ? ports[0]! : (ports[i] ?? ports[0]!) }));
}

/** One pool's position in its host list (PgBouncer's pool->rrcounter). */
export class HostRotation {
  private next = 0;

  constructor(
    readonly ports: readonly number[],
    readonly mode: LoadBalanceHosts,
  ) {}

  /** Every host of `hostList` (the pool's address.host), in the order one new connection tries them. */
  order(hostList: string): HostPort[] {
    const hosts = parseHosts(hostList, this.ports);
    const n = hosts.length;
    const start = this.next % n;
    if (this.mode === 'round-robin') this.next = (start + 1) % n;
    return Array.from({ length: n }, (_, i) => hosts[(start + i) % n]!);
  }

  /** The connection to the host at `offset` in the last order() worked: `disable` stays on that host. */
  connected(offset: number): void {
    if (this.mode === 'disable') this.next += offset;
  }
}
