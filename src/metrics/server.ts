// The operations HTTP endpoint: /metrics (Prometheus text, every worker's
// statistics merged), /healthz (the process answers) and /readyz (200 while
// accepting clients, 503 before listening and once a shutdown has begun).
import http from 'node:http';
import type net from 'node:net';
import type { Logger } from '../log/logger.js';
import type { StatsCollector } from '../stats/collector.js';
import { ExporterMetrics } from './exporter.js';

export interface MetricsServerOptions {
  host: string;
  port: number;
  collector: StatsCollector;
  /** Whether clients are being accepted: listening, and not shutting down. */
  ready: () => boolean;
  log: Logger;
}

export class MetricsServer {
  private readonly metrics = new ExporterMetrics();
  /** Scrapes run one at a time: update() and the text rendering share the registry. */
  private scrapes: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly server: http.Server,
    readonly port: number,
  ) {}

  static start(opts: MetricsServerOptions): Promise<MetricsServer> {
    let self: MetricsServer | null = null;
    const server = http.createServer((req, res) => {
      if (self) self.handle(req, res, opts);
      else res.writeHead(503).end();
    });
    server.keepAliveTimeout = 5000;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: opts.host, port: opts.port }, () => {
        server.off('error', reject);
        server.on('error', (err) => opts.log.error({ err: err.message }, 'metrics server error'));
        self = new MetricsServer(server, (server.address() as net.AddressInfo).port);
        resolve(self);
      });
    });
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse, opts: MetricsServerOptions): void {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const ready = opts.ready();
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ready\n' : 'not ready\n');
    } else if (path === '/metrics') {
      this.scrapes = this.scrapes.then(() => this.scrape(res, opts));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz or /readyz\n');
    }
  }

  private async scrape(res: http.ServerResponse, opts: MetricsServerOptions): Promise<void> {
    try {
      let stats = null;
      try {
        stats = await opts.collector.collect();
      } catch (err) {
        opts.log.warn({ err: (err as Error).message }, 'collecting statistics failed');
      }
      this.metrics.update(stats);
      const text = await this.metrics.registry.metrics();
      res.writeHead(200, { 'content-type': this.metrics.registry.contentType }).end(text);
    } catch (err) {
      opts.log.error({ err: (err as Error).message }, 'rendering metrics failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('metrics unavailable\n');
    }
  }
}
