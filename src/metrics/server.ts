// The operations HTTP endpoint: /metrics (Prometheus text, every worker's
// statistics merged), /healthz (the process answers) and /readyz (200 while
// accepting clients, 503 before listening and once a shutdown has begun).
// Whoever can reach the port must not be able to stall the proxy through it:
// scrapes share one collection, every request and connection has a deadline,
// connections are capped, and /metrics may require a bearer token.
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import type { Logger } from '../log/logger.js';
import type { ClusterStats } from '../stats/merge.js';
import type { StatsCollector } from '../stats/collector.js';
import { ExporterMetrics } from './exporter.js';

import type { MetricsEndpoint } from './endpoint.js';

export type { MetricsEndpoint } from './endpoint.js';

/** Bounds on what HTTP clients may hold; the defaults suit a Prometheus scraper and kubelet probes. */
export interface HttpLimits {
  /** The request line and headers must arrive within this (slowloris); Node wants it <= requestTimeoutMs. */
  headersTimeoutMs: number;
  /** The whole request, body included, must arrive within this. */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** A socket with no traffic either way is closed after this. */
  idleTimeoutMs: number;
  /** Connections open at once; more are closed on accept. */
  maxConnections: number;
  /** A scrape answers within this even if collecting hangs (then with pgbouncer_up 0). */
  scrapeDeadlineMs: number;
}

export const DEFAULT_HTTP_LIMITS: Readonly<HttpLimits> = Object.freeze({
  headersTimeoutMs: 5000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5000,
  // Above scrapeDeadlineMs: a scrape waiting for its numbers is not idle.
  idleTimeoutMs: 15_000,
  maxConnections: 64,
  // Above the primary's 1 s per-worker snapshot timeout, so a stuck worker is left out, not the scrape.
  scrapeDeadlineMs: 3000,
});

export interface MetricsServerOptions extends MetricsEndpoint {
  collector: StatsCollector;
  /** Whether clients are being accepted: listening, and not shutting down. */
  ready: () => boolean;
  log: Logger;
  /** Overrides of DEFAULT_HTTP_LIMITS (tests shorten them). */
  limits?: Partial<HttpLimits>;
}

interface Rendered {
  status: number;
  contentType: string;
  text: string;
}

export class MetricsServer {
  private readonly metrics = new ExporterMetrics();
  /** The scrape being rendered now; requests that arrive meanwhile get its result. */
  private rendering: Promise<Rendered> | null = null;
  /** The collection in flight; kept past a missed deadline so a hung collector is never called twice. */
  private collecting: Promise<ClusterStats> | null = null;
  /** Requests for /metrics not answered yet. */
  private waiting = 0;

  private constructor(
    private readonly server: http.Server,
    readonly port: number,
    private readonly opts: MetricsServerOptions,
    private readonly limits: HttpLimits,
    /** SHA-256 of the token: comparing digests takes the same time whatever the length. */
    private readonly tokenDigest: Buffer | null,
  ) {}

  static start(opts: MetricsServerOptions): Promise<MetricsServer> {
    const limits = { ...DEFAULT_HTTP_LIMITS, ...opts.limits };
    let self: MetricsServer | null = null;
    const server = http.createServer(
      {
        headersTimeout: limits.headersTimeoutMs,
        requestTimeout: limits.requestTimeoutMs,
        // Node enforces the two timeouts above only when it sweeps its connections (30 s by default).
        connectionsCheckingInterval: Math.max(10, Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 4),
      },
      (req, res) => {
        if (self) self.handle(req, res);
        else res.writeHead(503).end();
      },
    );
    server.keepAliveTimeout = limits.keepAliveTimeoutMs;
    server.maxConnections = limits.maxConnections;
    server.setTimeout(limits.idleTimeoutMs); // no 'timeout' listener: Node destroys the socket
    const tokenDigest = opts.authToken === null ? null : digest(opts.authToken);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: opts.host, port: opts.port }, () => {
        server.off('error', reject);
        server.on('error', (err) => opts.log.error({ err: err.message }, 'metrics server error'));
        self = new MetricsServer(server, (server.address() as net.AddressInfo).port, opts, limits, tokenDigest);
        resolve(self);
      });
    });
  }

  /** Scrapes waiting for their answer now: all share the one rendering in flight. */
  get scrapesWaiting(): number {
    return this.waiting;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    // Bodies are never read: close after answering rather than drain one.
    if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) res.setHeader('connection', 'close');
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain', connection: 'close' }).end('method not allowed\n');
      return;
    }
    // Probes carry no token (kubelet): health stays open; only /metrics is protected.
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const ready = this.opts.ready();
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ready\n' : 'not ready\n');
    } else if (path === '/metrics') {
      if (!this.authorized(req.headers.authorization)) {
        res.writeHead(401, { 'www-authenticate': 'Bearer realm="pg-ingress metrics"', 'content-type': 'text/plain' }).end('unauthorized: send Authorization: Bearer <metrics_auth_token>\n');
        return;
      }
      this.waiting++;
      void this.render().then(({ status, contentType, text }) => {
        this.waiting--;
        if (!res.destroyed) res.writeHead(status, { 'content-type': contentType }).end(text);
      });
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz or /readyz\n');
    }
  }

  private authorized(header: string | undefined): boolean {
    if (this.tokenDigest === null) return true;
    // RFC 6750 section 2.1: the scheme is case-insensitive, one or more spaces before the token.
    const match = /^Bearer +(.+)$/i.exec(header ?? '');
    return timingSafeEqual(digest(match ? match[1]!.trimEnd() : ''), this.tokenDigest) && match !== null;
  }

  /** One rendering at a time, shared by every request that arrives while it runs. */
  private render(): Promise<Rendered> {
    this.rendering ??= this.collectAndRender().finally(() => {
      this.rendering = null;
    });
    return this.rendering;
  }

  private async collectAndRender(): Promise<Rendered> {
    const stats = await this.collectWithin(this.limits.scrapeDeadlineMs);
    try {
      this.metrics.update(stats);
      return { status: 200, contentType: this.metrics.registry.contentType, text: await this.metrics.registry.metrics() };
    } catch (err) {
      this.opts.log.error({ err: (err as Error).message }, 'rendering metrics failed');
      return { status: 500, contentType: 'text/plain', text: 'metrics unavailable\n' };
    }
  }

  /** The merged statistics, or null when collecting fails or misses the deadline. */
  private collectWithin(deadlineMs: number): Promise<ClusterStats | null> {
    if (this.collecting === null) {
      // A collector that throws instead of rejecting counts as a failed collection.
      const collecting = Promise.resolve().then(() => this.opts.collector.collect());
      this.collecting = collecting;
      const done = (): void => {
        if (this.collecting === collecting) this.collecting = null;
      };
      collecting.then(done, done);
    }
    const collecting = this.collecting;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.opts.log.warn({ deadline_ms: deadlineMs }, 'collecting statistics missed the scrape deadline');
        resolve(null);
      }, deadlineMs);
      timer.unref();
      collecting.then(
        (stats) => {
          clearTimeout(timer);
          resolve(stats);
        },
        (err: Error) => {
          clearTimeout(timer);
          this.opts.log.warn({ err: err.message }, 'collecting statistics failed');
          resolve(null);
        },
      );
    });
  }
}

const digest = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();
