// The lines `pg-ingress check --live` prints: one check a line, its verdict
// first, so a person reads down the left edge and a script greps for FAIL.

export type Verdict = 'ok' | 'FAIL' | 'warn' | 'skip';

export class CheckReport {
  private failures = 0;

  constructor(private readonly write: (line: string) => void) {}

  /** Nothing failed (warnings and skips do not count). */
  get passed(): boolean {
    return this.failures === 0;
  }

  line(verdict: Verdict, text: string): void {
    if (verdict === 'FAIL') this.failures++;
    this.write(`${verdict.padEnd(4)} ${text}`);
  }

  ok(text: string): void {
    this.line('ok', text);
  }

  fail(text: string): void {
    this.line('FAIL', text);
  }

  warn(text: string): void {
    this.line('warn', text);
  }

  skip(text: string): void {
    this.line('skip', text);
  }
}
