// `check --live`'s certificate lines, with certificates made here and the clock moved.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Config } from '../../../src/config/schema.js';
import { checkClientCertificate } from '../../../src/cli/check-certificate.js';
import { CheckReport } from '../../../src/cli/check-report.js';
import { selfSigned } from '../../../src/tls/certificates.js';

async function linesAt(now: Date, days = 30): Promise<{ lines: string[]; passed: boolean; key: string }> {
  const pair = await selfSigned(['db.example.com', '192.0.2.1'], days);
  const dir = mkdtempSync(join(tmpdir(), 'pg-ingress-cert-'));
  writeFileSync(join(dir, 'tls.crt'), pair.cert);
  writeFileSync(join(dir, 'tls.key'), pair.key);
  const config = { client_tls_sslmode: 'require', client_tls_cert_file: join(dir, 'tls.crt'), client_tls_key_file: join(dir, 'tls.key') } as Config;
  const lines: string[] = [];
  const report = new CheckReport((l) => lines.push(l));
  checkClientCertificate(config, report, now);
  return { lines, passed: report.passed, key: pair.key };
}

describe('checkClientCertificate', () => {
  it('passes a fresh pair: readable, matching, valid, its names', async () => {
    const r = await linesAt(new Date());
    expect(r.passed).toBe(true);
    expect(r.lines.map((l) => l.slice(0, 5))).toEqual(['ok   ', 'ok   ', 'ok   ', 'ok   ']);
    expect(r.lines.at(-1)).toMatch(/^ok {3}client certificate: names DNS:db\.example\.com, IP:192\.0\.2\.1 \(subject CN=db\.example\.com\)$/);
  });

  it('FAILs once expired and before notBefore; warns under 14 days left, not at 14', async () => {
    const day = 86_400_000;
    expect((await linesAt(new Date(Date.now() + 31 * day))).lines).toContainEqual(expect.stringMatching(/^FAIL client certificate: expired on /));
    expect((await linesAt(new Date(Date.now() - day))).lines).toContainEqual(expect.stringMatching(/^FAIL client certificate: not valid before /));
    const warned = await linesAt(new Date(Date.now() + 20 * day));
    expect(warned.passed).toBe(true);
    expect(warned.lines).toContainEqual(expect.stringMatching(/^warn client certificate: expires in 9 days/));
    expect((await linesAt(new Date(Date.now() + 15 * day))).lines).toContainEqual(expect.stringMatching(/^ok {3}client certificate: valid until .* \(14 days\)/));
  });

  it('never prints key material', async () => {
    const r = await linesAt(new Date());
    for (const part of r.key.split('\n').filter((l) => !l.startsWith('-----') && l !== '')) expect(r.lines.join('\n')).not.toContain(part);
  });

  it('skips when clients get no TLS', () => {
    const lines: string[] = [];
    checkClientCertificate({ client_tls_sslmode: 'disable' } as Config, new CheckReport((l) => lines.push(l)));
    expect(lines).toEqual(['skip client certificate: client_tls_sslmode is disable, pg-ingress offers clients no TLS']);
  });
});
