// Certificate generation: the self-signed fallback that lets `npm start` work
// before an operator mounts a real certificate, and the CA + leaf pair the test
// harness and benchmarks use. ECDSA P-256, via WebCrypto and @peculiar/x509.
import { webcrypto } from 'node:crypto';
import { x509 } from './x509.js';

const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;

export interface PemPair {
  cert: string;
  key: string;
}

async function newKeys(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

async function keyPem(keys: webcrypto.CryptoKeyPair): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey as webcrypto.CryptoKey);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  const notBefore = new Date(Date.now() - 60_000);
  return { notBefore, notAfter: new Date(notBefore.getTime() + days * 86_400_000) };
}

function subjectAltNames(hosts: readonly string[]): x509.SubjectAlternativeNameExtension {
  const isIp = (h: string): boolean => /^[\d.]+$/.test(h) || h.includes(':');
  return new x509.SubjectAlternativeNameExtension(hosts.map((h) => ({ type: isIp(h) ? 'ip' : 'dns', value: h })));
}

/** A self-signed server certificate for the given host names and addresses. */
export async function selfSigned(hosts: readonly string[], days = 365): Promise<PemPair> {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${hosts[0] ?? 'pg-ingress'}`,
    keys,
    signingAlgorithm: SIGNING_ALGORITHM,
    ...validity(days),
    extensions: [subjectAltNames(hosts), new x509.BasicConstraintsExtension(false)],
  });
  return { cert: cert.toString('pem'), key: await keyPem(keys) };
}

export interface CertificateAuthority extends PemPair {
  /** Issues a server certificate for the given host names and addresses. */
  issue(hosts: readonly string[], days?: number): Promise<PemPair>;
}

/** A throwaway CA (for tests, benchmarks and local development). */
export async function createCa(name = 'pg-ingress test CA'): Promise<CertificateAuthority> {
  const caKeys = await newKeys();
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${name}`,
    keys: caKeys,
    signingAlgorithm: SIGNING_ALGORITHM,
    ...validity(30),
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
  });
  return {
    cert: caCert.toString('pem'),
    key: await keyPem(caKeys),
    async issue(hosts, days = 30) {
      const keys = await newKeys();
      const cert = await x509.X509CertificateGenerator.create({
        subject: `CN=${hosts[0] ?? 'localhost'}`,
        issuer: caCert.subject,
        publicKey: keys.publicKey,
        signingKey: caKeys.privateKey,
        signingAlgorithm: SIGNING_ALGORITHM,
        ...validity(days),
        extensions: [subjectAltNames(hosts), new x509.BasicConstraintsExtension(false)],
      });
      return { cert: cert.toString('pem'), key: await keyPem(keys) };
    },
  };
}
