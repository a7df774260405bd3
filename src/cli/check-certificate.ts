// `check --live`: the certificate pg-ingress shows clients (client_tls_*):
// readable, its key matching, how long it stays valid, and the names it holds.
// Never prints key material.
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Config } from '../config/schema.js';
import type { CheckReport } from './check-report.js';

/** Less than this left before notAfter is a warning (cert-manager renews at a third of the lifetime left). */
export const EXPIRY_WARNING_DAYS = 14;

const DAY_MS = 86_400_000;

export function checkClientCertificate(config: Config, report: CheckReport, now = new Date()): void {
  if (config.client_tls_sslmode === 'disable') {
    report.skip('client certificate: client_tls_sslmode is disable, pg-ingress offers clients no TLS');
    return;
  }
  const { client_tls_cert_file: certFile, client_tls_key_file: keyFile } = config;
  if (certFile === null || keyFile === null) {
    report.warn('client certificate: client_tls_cert_file and client_tls_key_file are not set, so pg-ingress makes a self-signed certificate at start: clients can encrypt (sslmode=require) but verify-full refuses it');
    return;
  }
  const cert = readCertificate(certFile, report);
  const key = readKey(keyFile, report);
  if (cert === null) return;
  if (key !== null) {
    if (cert.checkPrivateKey(key)) report.ok(`client certificate: the key in ${keyFile} belongs to the certificate in ${certFile}`);
    else report.fail(`client certificate: the key in ${keyFile} does not belong to the certificate in ${certFile} (TLS handshakes would fail): put the matching pair in place`);
  }
  checkValidity(cert, report, now);
  const names = cert.subjectAltName?.split(', ').map((n) => n.replace(/^IP Address:/, 'IP:')) ?? [];
  if (names.length > 0) report.ok(`client certificate: names ${names.join(', ')} (subject ${cert.subject.replaceAll('\n', ', ')})`);
  else report.warn(`client certificate: no subjectAltName, so clients with sslmode=verify-full refuse it whatever host they connect to (subject ${cert.subject.replaceAll('\n', ', ')})`);
}

function readCertificate(file: string, report: CheckReport): X509Certificate | null {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    report.fail(`client certificate: client_tls_cert_file ${JSON.stringify(file)} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    return null;
  }
  try {
    // The first certificate is the server's own; any that follow are its chain.
    const cert = new X509Certificate(pem);
    report.ok(`client certificate: ${file} is readable and holds a certificate`);
    return cert;
  } catch {
    report.fail(`client certificate: client_tls_cert_file ${JSON.stringify(file)} holds no PEM certificate`);
    return null;
  }
}

function readKey(file: string, report: CheckReport): KeyObject | null {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    report.fail(`client certificate: client_tls_key_file ${JSON.stringify(file)} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    return null;
  }
  try {
    return createPrivateKey(pem);
  } catch {
    // The parser's message may quote the file: say only that it is not a key.
    report.fail(`client certificate: client_tls_key_file ${JSON.stringify(file)} holds no usable private key (PEM, unencrypted)`);
    return null;
  }
}

function checkValidity(cert: X509Certificate, report: CheckReport, now: Date): void {
  const notBefore = new Date(cert.validFrom);
  const notAfter = new Date(cert.validTo);
  const until = notAfter.toISOString();
  const daysLeft = Math.floor((notAfter.getTime() - now.getTime()) / DAY_MS);
  if (now < notBefore) report.fail(`client certificate: not valid before ${notBefore.toISOString()} (check the clock, or the certificate's dates)`);
  else if (now > notAfter) report.fail(`client certificate: expired on ${until}`);
  else if (daysLeft < EXPIRY_WARNING_DAYS) report.warn(`client certificate: expires in ${daysLeft} days (${until}): renew it; pg-ingress picks the new files up without a restart`);
  else report.ok(`client certificate: valid until ${until} (${daysLeft} days)`);
}
