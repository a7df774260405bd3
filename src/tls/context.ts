// The server-side TLS context: loaded from the configured PEM files (and
// reloaded when cert-manager rotates them), or a self-signed certificate when
// none is configured so that a first `npm start` works.
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync, watchFile, unwatchFile } from 'node:fs';
import tls from 'node:tls';
import { x509 } from './x509.js';
import type { Config } from '../config/index.js';
import type { Logger } from '../log/logger.js';
import { selfSigned, type PemPair } from './certificates.js';

export interface ServerTls {
  context: tls.SecureContext;
  /** tls-server-end-point channel binding data: hash of our certificate (RFC 5929). */
  endpointHash: Buffer;
  minVersion: tls.SecureVersion;
}

export class TlsContextProvider {
  private current: ServerTls;
  private readonly watched: string[] = [];

  private constructor(
    pem: PemPair,
    private readonly minVersion: tls.SecureVersion,
  ) {
    this.current = build(pem, minVersion);
  }

  static async create(config: Config, log: Logger): Promise<TlsContextProvider> {
    const minVersion: tls.SecureVersion = config.client_tls_protocols === 'tlsv1.3' ? 'TLSv1.3' : 'TLSv1.2';
    const { client_tls_cert_file: certFile, client_tls_key_file: keyFile } = config;
    if (certFile && keyFile) {
      const provider = new TlsContextProvider(readPair(certFile, keyFile), minVersion);
      provider.watch(certFile, keyFile, log);
      return provider;
    }
    log.warn(
      'no client_tls_cert_file/client_tls_key_file configured: using a self-signed certificate generated at startup; ' +
        'clients can encrypt (sslmode=require) but cannot verify the server (verify-full fails). Configure a real certificate for production.',
    );
    return new TlsContextProvider(await selfSigned(['localhost', '127.0.0.1', '::1']), minVersion);
  }

  get tls(): ServerTls {
    return this.current;
  }

  close(): void {
    for (const file of this.watched) unwatchFile(file);
  }

  // cert-manager replaces the Secret's files atomically; poll both and swap the
  // context for new handshakes, keeping the old one if the new pair is broken.
  private watch(certFile: string, keyFile: string, log: Logger): void {
    const reload = (): void => {
      try {
        this.current = build(readPair(certFile, keyFile), this.minVersion);
        log.info({ cert_file: certFile }, 'TLS certificate reloaded');
      } catch (err) {
        log.error({ cert_file: certFile, err: (err as Error).message }, 'TLS certificate reload failed; keeping the previous certificate');
      }
    };
    for (const file of [certFile, keyFile]) {
      watchFile(file, { interval: 2000, persistent: false }, (now, before) => {
        if (now.mtimeMs !== before.mtimeMs || now.ino !== before.ino) reload();
      });
      this.watched.push(file);
    }
  }
}

// RFC 5929 tls-server-end-point: hash with the certificate's own signature hash,
// except that MD5 and SHA-1 are replaced by SHA-256.
function endpointHashAlgorithm(certPem: string): string {
  const hash = (new x509.X509Certificate(certPem).signatureAlgorithm as { hash?: { name?: string } }).hash?.name ?? 'SHA-256';
  return hash === 'SHA-384' ? 'sha384' : hash === 'SHA-512' ? 'sha512' : 'sha256';
}

function readPair(certFile: string, keyFile: string): PemPair {
  return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
}

// Session tickets let reconnecting clients resume without a full handshake. The
// keys are per process (or shared by the workers through PG_INGRESS_TICKET_KEYS)
// and survive certificate reloads.
const TICKET_KEYS = process.env.PG_INGRESS_TICKET_KEYS ? Buffer.from(process.env.PG_INGRESS_TICKET_KEYS, 'base64') : randomBytes(48);

export const PREFERRED_CIPHERS = ['TLS_AES_128_GCM_SHA256', ...tls.DEFAULT_CIPHERS.split(':').filter((c) => c !== 'TLS_AES_128_GCM_SHA256')].join(':');

function build(pem: PemPair, minVersion: tls.SecureVersion): ServerTls {
  const context = tls.createSecureContext({
    cert: pem.cert,
    key: pem.key,
    minVersion,
    // AES-128-GCM first (cheapest per record with AES-NI, as strong as needed), then Node's defaults; our order wins.
    ciphers: PREFERRED_CIPHERS,
    honorCipherOrder: true,
    ticketKeys: TICKET_KEYS.length === 48 ? TICKET_KEYS : randomBytes(48),
    sessionTimeout: 3600,
  } as tls.SecureContextOptions);
  const leaf = new X509Certificate(pem.cert);
  return { context, endpointHash: createHash(endpointHashAlgorithm(pem.cert)).update(leaf.raw).digest(), minVersion };
}
