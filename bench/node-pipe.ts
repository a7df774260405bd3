// The platform floor for the benchmark: the least a Node.js TLS-terminating
// proxy can do. Answers SSLRequest, terminates TLS with the settings pg-ingress
// uses (AES-128-GCM first, session tickets), and pipe()s the bytes to PostgreSQL
// on a new connection per client: no pooling, no parsing, no authentication of
// its own (the client logs in to PostgreSQL through it). With the same number
// of worker processes as pg-ingress (node:cluster), its CPU per transaction is
// what Node's socket and TLS path cost before any proxy logic.
// Input: env NODE_PIPE = JSON { port, upstreamHost, upstreamPort, certFile, keyFile, workers }.
import cluster from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { PREFERRED_CIPHERS } from '../src/tls/context.js';

interface Input {
  port: number;
  upstreamHost: string;
  upstreamPort: number;
  certFile: string;
  keyFile: string;
  workers: number;
}

const input = JSON.parse(process.env.NODE_PIPE ?? '{}') as Input;
const SSL_REQUEST_CODE = 80877103;

if (cluster.isPrimary && input.workers > 1) {
  const ticketKeys = randomBytes(48).toString('base64');
  for (let i = 0; i < input.workers; i++) cluster.fork({ NODE_PIPE_TICKET_KEYS: ticketKeys });
  process.once('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    process.exit(0);
  });
} else {
  const context = tls.createSecureContext({
    cert: readFileSync(input.certFile),
    key: readFileSync(input.keyFile),
    minVersion: 'TLSv1.2',
    ciphers: PREFERRED_CIPHERS,
    honorCipherOrder: true,
    ticketKeys: process.env.NODE_PIPE_TICKET_KEYS ? Buffer.from(process.env.NODE_PIPE_TICKET_KEYS, 'base64') : randomBytes(48),
    sessionTimeout: 3600,
  });
  const server = net.createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => socket.destroy());
    // The first packet is 8 bytes; libpq sends nothing more until it has our answer.
    socket.once('data', (first: Buffer) => {
      if (first.length !== 8 || first.readInt32BE(4) !== SSL_REQUEST_CODE) return void socket.destroy();
      socket.pause();
      socket.write('S');
      const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: context });
      const upstream = net.connect({ host: input.upstreamHost, port: input.upstreamPort, noDelay: true });
      const close = (): void => {
        secure.destroy();
        upstream.destroy();
      };
      secure.on('error', close).on('close', close);
      upstream.on('error', close).on('close', close);
      secure.pipe(upstream);
      upstream.pipe(secure);
    });
  });
  server.listen(input.port, '127.0.0.1');
  process.once('SIGTERM', () => process.exit(0));
}
