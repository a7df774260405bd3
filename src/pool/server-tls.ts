// TLS toward the upstream server (server_tls_*), as PgBouncer does it
// (server.c handle_sslchar, sbuf.c setup_tls): SSLRequest before the
// StartupMessage; 'S' upgrades the socket, 'N' continues in plaintext unless
// the mode requires TLS. prefer and require encrypt without checking the
// certificate, verify-ca checks it against server_tls_ca_file, verify-full also
// checks the host name. allow behaves as prefer, as in PgBouncer 1.25 (its docs
// mark allow "FIXME"; its code asks for TLS first in every mode but disable).
// https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-SSL
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { serialize } from 'pg-protocol';
import type { Config, ServerSslMode, ServerTlsProtocol } from '../config/schema.js';
import { x509 } from '../tls/x509.js';

/** What a server connection needs to know about TLS, from the global server_tls_* keys. */
export interface ServerTlsSettings {
  sslmode: ServerSslMode;
  caFile: string | null;
  certFile: string | null;
  keyFile: string | null;
  protocols: readonly ServerTlsProtocol[];
  ciphers: string;
}

export function serverTlsSettings(config: Config): ServerTlsSettings {
  return {
    sslmode: config.server_tls_sslmode,
    caFile: config.server_tls_ca_file,
    certFile: config.server_tls_cert_file,
    keyFile: config.server_tls_key_file,
    protocols: config.server_tls_protocols,
    ciphers: config.server_tls_ciphers,
  };
}

/** TLS to the server failed, or the mode requires it and the server refused. Never quotes key material. */
export class ServerTlsError extends Error {
  override name = 'ServerTlsError';
}

/** The socket a login continues on, and the channel binding data when it is TLS. */
export interface NegotiatedServer {
  socket: net.Socket;
  /** tls-server-end-point data (RFC 5929) of the server's certificate; null in plaintext. */
  endpointHash: Buffer | null;
}

/**
 * Asks the server for TLS on a connected socket and upgrades it when it agrees.
 * `host` is the name the socket was opened to: verify-full checks it.
 */
export async function negotiateServerTls(socket: net.Socket, host: string, settings: ServerTlsSettings): Promise<NegotiatedServer> {
  if (settings.sslmode === 'disable') return { socket, endpointHash: null };
  const context = serverSecureContext(settings); // before writing: a bad file fails without a round trip
  const answer = await sslAnswer(socket);
  if (answer === 'N') {
    if (requiresTls(settings.sslmode)) throw new ServerTlsError(`the server at ${host} refused TLS and server_tls_sslmode is ${settings.sslmode}`);
    return { socket, endpointHash: null };
  }
  const secure = await upgrade(socket, host, settings, context);
  return { socket: secure, endpointHash: endpointHash(secure) };
}

export function requiresTls(mode: ServerSslMode): boolean {
  return mode === 'require' || mode === 'verify-ca' || mode === 'verify-full';
}

/** Sends SSLRequest and reads the one byte answer; anything after it came unencrypted and may be injected (CVE-2021-23214). */
function sslAnswer(socket: net.Socket): Promise<'S' | 'N'> {
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      done();
      socket.pause();
      const c = String.fromCharCode(chunk[0]!);
      if (c !== 'S' && c !== 'N') reject(new ServerTlsError(`the server answered the SSLRequest with ${JSON.stringify(c)} instead of S or N`));
      else if (chunk.length > 1) reject(new ServerTlsError('the server sent unencrypted data after its SSLRequest answer'));
      else resolve(c);
    };
    const onClose = (): void => {
      done();
      reject(new ServerTlsError('the server closed the connection after the SSLRequest'));
    };
    const onError = (err: Error): void => {
      done();
      reject(new ServerTlsError(`the connection failed during the SSLRequest: ${err.message}`));
    };
    const done = (): void => {
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onError);
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('error', onError);
    socket.write(serialize.requestSsl());
    socket.resume();
  });
}

function upgrade(socket: net.Socket, host: string, settings: ServerTlsSettings, context: tls.SecureContext): Promise<tls.TLSSocket> {
  const verify = settings.sslmode === 'verify-ca' || settings.sslmode === 'verify-full';
  return new Promise((resolve, reject) => {
    const secure = tls.connect({
      socket,
      secureContext: context,
      // SNI must not carry an IP address (RFC 6066 §3).
      servername: net.isIP(host) === 0 ? host : undefined,
      rejectUnauthorized: verify,
      checkServerIdentity: settings.sslmode === 'verify-full' ? (_name, cert) => tls.checkServerIdentity(host, cert) : () => undefined,
    });
    const onError = (err: Error): void => {
      secure.destroy();
      reject(new ServerTlsError(`TLS to the server at ${host} failed (server_tls_sslmode ${settings.sslmode}): ${err.message}`));
    };
    secure.once('error', onError);
    secure.once('secureConnect', () => {
      secure.off('error', onError);
      resolve(secure);
    });
  });
}

/** RFC 5929 tls-server-end-point: the certificate hashed with its signature's hash, SHA-256 for MD5 and SHA-1. */
export function endpointHash(socket: tls.TLSSocket): Buffer | null {
  const peer = socket.getPeerX509Certificate();
  if (!peer) return null;
  let hash = 'sha256';
  try {
    const name = (new x509.X509Certificate(peer.raw).signatureAlgorithm as { hash?: { name?: string } }).hash?.name;
    if (name === 'SHA-384') hash = 'sha384';
    else if (name === 'SHA-512') hash = 'sha512';
  } catch {
    // An algorithm the parser does not know: SHA-256, and the server decides whether the binding matches.
  }
  return createHash(hash).update(peer.raw).digest();
}

// ---- secure contexts ----------------------------------------------------

const VERSION: Record<ServerTlsProtocol, tls.SecureVersion> = { 'tlsv1.0': 'TLSv1', 'tlsv1.1': 'TLSv1.1', 'tlsv1.2': 'TLSv1.2', 'tlsv1.3': 'TLSv1.3' };
const ORDER: readonly ServerTlsProtocol[] = ['tlsv1.0', 'tlsv1.1', 'tlsv1.2', 'tlsv1.3'];
/** PgBouncer's cipher shortcuts that mean "OpenSSL's defaults". */
const DEFAULT_CIPHERS = new Set(['default', 'secure', 'fast', 'normal']);
const TLS13_SUITES = tls.DEFAULT_CIPHERS.split(':').filter((c) => c.startsWith('TLS_')).join(':');

interface Cached {
  key: string;
  stamp: string;
  context: tls.SecureContext;
}

/** One context per distinct settings; rebuilt when one of its files changes (checked at each new connection). */
const contexts = new Map<string, Cached>();

/**
 * The SecureContext for `settings`, read from the files again whenever one of
 * them changed since (cert-manager rotating a Secret), so each new server
 * connection uses the files as they are now.
 */
export function serverSecureContext(settings: ServerTlsSettings): tls.SecureContext {
  const key = JSON.stringify([settings.caFile, settings.certFile, settings.keyFile, settings.protocols, settings.ciphers]);
  const stamp = [settings.caFile, settings.certFile, settings.keyFile].map(fileStamp).join('|');
  const hit = contexts.get(key);
  if (hit && hit.stamp === stamp) return hit.context;
  const context = buildContext(settings);
  if (contexts.size >= 16) contexts.clear(); // settings change only by reload: a handful at most
  contexts.set(key, { key, stamp, context });
  return context;
}

function fileStamp(file: string | null): string {
  if (file === null) return '';
  try {
    const s = statSync(file);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch (err) {
    throw new ServerTlsError(`cannot read ${JSON.stringify(file)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function read(file: string, key: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ServerTlsError(`${key}: cannot read ${JSON.stringify(file)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function buildContext(s: ServerTlsSettings): tls.SecureContext {
  const versions = ORDER.filter((v) => s.protocols.includes(v));
  const options: tls.SecureContextOptions = {
    minVersion: VERSION[versions[0] ?? 'tlsv1.2'],
    maxVersion: VERSION[versions.at(-1) ?? 'tlsv1.3'],
  };
  const ciphers = s.ciphers.trim().toLowerCase();
  if (!DEFAULT_CIPHERS.has(ciphers)) {
    // server_tls_ciphers governs TLS 1.2 and below only (server_tls13_ciphers is TLS 1.3's): keep Node's TLS 1.3 suites.
    const list = ciphers === 'all' ? 'ALL' : s.ciphers;
    options.ciphers = list.split(':').some((c) => c.startsWith('TLS_')) ? list : `${list}:${TLS13_SUITES}`;
  }
  if (s.caFile !== null) options.ca = read(s.caFile, 'server_tls_ca_file');
  if (s.certFile !== null) options.cert = read(s.certFile, 'server_tls_cert_file');
  if (s.keyFile !== null) options.key = read(s.keyFile, 'server_tls_key_file');
  try {
    return tls.createSecureContext(options);
  } catch (err) {
    throw new ServerTlsError(`server_tls_*: the TLS settings cannot be used: ${(err as Error).message}`);
  }
}

/**
 * node-postgres `ssl` options for the same settings (the auth_query connection),
 * or false for disable. prefer and allow ask for TLS; the caller falls back to
 * plaintext when the server refuses it (isTlsRefusal).
 */
export function pgSslOptions(settings: ServerTlsSettings, host: string): false | tls.ConnectionOptions {
  if (settings.sslmode === 'disable') return false;
  return {
    secureContext: serverSecureContext(settings),
    rejectUnauthorized: settings.sslmode === 'verify-ca' || settings.sslmode === 'verify-full',
    checkServerIdentity: settings.sslmode === 'verify-full' ? (_name, cert) => tls.checkServerIdentity(host, cert) : () => undefined,
  };
}

/** node-postgres's error when the server answers the SSLRequest with 'N'. */
export function isTlsRefusal(err: Error): boolean {
  return err.message === 'The server does not support SSL connections';
}
