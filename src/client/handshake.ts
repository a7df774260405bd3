// The first packets of a client connection, before authentication: SSLRequest
// (answered S and upgraded to TLS, or N), GSSENCRequest (always N),
// CancelRequest, and finally the StartupMessage.
// https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-SSL
import type net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { ClientSslMode } from '../config/index.js';
import { decodeFirstPacket, StartupPacketError, StartupReader } from '../protocol/startup.js';
import { fatal, PgError, SqlState } from '../protocol/pg-error.js';
import type { ServerTls } from '../tls/context.js';

export type Negotiated =
  | { kind: 'cancel'; processId: number; secretKey: number }
  | {
      kind: 'startup';
      socket: Duplex;
      tls: tls.TLSSocket | null;
      /** tls-server-end-point data of the certificate this handshake used (not the one loaded now: it may have rotated). */
      endpointHash: Buffer | null;
      minor: number;
      params: Map<string, string>;
      protocolOptions: string[];
      /** Bytes that followed the StartupMessage (the client's next message, if it pipelined). */
      rest: Buffer;
    };

/** A connection to drop without a word (Postgres does the same). */
export class SilentClose extends Error {}

export interface HandshakeOptions {
  sslmode: ClientSslMode;
  tls: () => ServerTls;
  /** Called with the TLS socket as soon as it exists, so that the login deadline can end it too. */
  onSecure?: (secure: tls.TLSSocket) => void;
}

/** The steps before authentication. No timer of its own: the login deadline (client/login-deadline.ts) ends it. */
export async function negotiate(socket: net.Socket, opts: HandshakeOptions): Promise<Negotiated> {
  let stream: Duplex = socket;
  let secure: tls.TLSSocket | null = null;
  let endpointHash: Buffer | null = null;
  let gssAnswered = false;
  for (;;) {
    const { packet, rest } = await readPacket(stream);
    const first = decode(packet);
    switch (first.kind) {
      case 'ssl':
        if (secure) throw fatal(SqlState.protocolViolation, 'SSLRequest received on an encrypted connection');
        // Anything sent after SSLRequest but before the handshake was sent in the
        // clear and could be injected (CVE-2021-23214): refuse it.
        if (rest.length > 0) throw new SilentClose('bytes after SSLRequest');
        if (opts.sslmode === 'disable') {
          socket.write('N');
          break;
        }
        socket.write('S');
        ({ secure, endpointHash } = await upgrade(socket, opts));
        stream = secure;
        break;
      case 'gssenc':
        if (rest.length > 0 || gssAnswered) throw new SilentClose('bytes after GSSENCRequest');
        gssAnswered = true;
        stream.write('N');
        break;
      case 'cancel':
        return { kind: 'cancel', processId: first.processId, secretKey: first.secretKey };
      case 'startup':
        return { kind: 'startup', socket: stream, tls: secure, endpointHash, minor: first.minor, params: first.params, protocolOptions: first.protocolOptions, rest };
    }
  }
}

function decode(packet: Buffer): ReturnType<typeof decodeFirstPacket> {
  try {
    return decodeFirstPacket(packet);
  } catch (err) {
    throw err instanceof StartupPacketError ? fatal(SqlState.protocolViolation, err.message) : err;
  }
}

/** Reads one untyped first packet (at most MAX_STARTUP_LENGTH bytes held); leaves the stream paused so that no byte is lost. */
function readPacket(stream: Duplex): Promise<{ packet: Buffer; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const reader = new StartupReader();
    const done = (err: Error | null, result?: { packet: Buffer; rest: Buffer }): void => {
      stream.pause();
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      stream.off('error', onEnd);
      if (err) reject(err);
      else resolve(result!);
    };
    const onData = (chunk: Buffer): void => {
      try {
        const result = reader.push(chunk);
        if (result) done(null, result);
      } catch (err) {
        done(err instanceof StartupPacketError ? fatal(SqlState.protocolViolation, err.message) : (err as Error));
      }
    };
    const onEnd = (): void => done(new SilentClose('client closed during startup'));
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('close', onEnd);
    stream.on('error', onEnd);
    stream.resume();
  });
}

// ALPN "postgresql" in wire form. A DataView, because Node copies an array or a Buffer
// into a slice of its shared 8 kB allocation pool, and each connection's slice would
// pin a slab for the connection's life; a DataView gets its own 11-byte ArrayBuffer.
const ALPN_POSTGRESQL = new DataView(Uint8Array.from([10, ...Buffer.from('postgresql', 'latin1')]).buffer);

function upgrade(socket: net.Socket, opts: HandshakeOptions): Promise<{ secure: tls.TLSSocket; endpointHash: Buffer }> {
  // One look at the provider: the context and its certificate's hash belong together.
  const { context, minVersion, endpointHash } = opts.tls();
  const secure = new tls.TLSSocket(socket, {
    isServer: true,
    secureContext: context,
    minVersion,
    ALPNProtocols: ALPN_POSTGRESQL,
  } as tls.TLSSocketOptions);
  opts.onSecure?.(secure);
  return new Promise((resolve, reject) => {
    const fail = (err: Error): void => {
      secure.off('close', closed);
      secure.destroy();
      reject(err instanceof PgError || err instanceof SilentClose ? err : new SilentClose(`TLS handshake failed: ${err.message}`));
    };
    const closed = (): void => fail(new SilentClose('client closed during the TLS handshake'));
    secure.once('secure', () => {
      secure.off('error', fail);
      secure.off('close', closed);
      resolve({ secure, endpointHash });
    });
    secure.once('error', fail);
    secure.once('close', closed);
  });
}
