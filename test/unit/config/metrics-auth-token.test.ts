// metrics_auth_token and metrics_auth_token_file: a secret like auth_password,
// from the key or from a mounted Secret, never quoted in an error.
import { describe, expect, test } from 'vitest';
import { loadConfig } from '../../../src/config/index.js';
import { SECRET_KEYS } from '../../../src/config/schema.js';
import { configError, tempDir } from './helpers.js';

const file = tempDir();

describe('metrics_auth_token', () => {
  test('unset by default: /metrics is open', () => {
    expect(loadConfig({ env: {} }).metrics_auth_token).toBeNull();
  });

  test('from YAML, from PG_INGRESS_METRICS_AUTH_TOKEN, and from a file with one trailing newline dropped', () => {
    expect(loadConfig({ file: file('t.yaml', 'metrics_auth_token: yaml-tok\n'), env: {} }).metrics_auth_token).toBe('yaml-tok');
    expect(loadConfig({ env: { PG_INGRESS_METRICS_AUTH_TOKEN: 'env-tok' } }).metrics_auth_token).toBe('env-tok');
    const secret = file('token', 'file-tok\n');
    expect(loadConfig({ env: { PG_INGRESS_METRICS_AUTH_TOKEN_FILE: secret } }).metrics_auth_token).toBe('file-tok');
    expect(loadConfig({ file: file('tf.yaml', `metrics_auth_token_file: ${secret}\n`), env: {} }).metrics_auth_token).toBe('file-tok');
  });

  test('is a secret: never shown by SHOW CONFIG, never quoted in an error', () => {
    expect(SECRET_KEYS.has('metrics_auth_token')).toBe(true);
    const err = configError(() => loadConfig({ env: {}, overrides: { metrics_auth_token: 123456789 } }));
    expect(err).toMatch(/overrides: metrics_auth_token: expected a string or null$/);
    expect(err).not.toContain('123456789');
  });

  test('a token no scraper could send (spaces, control characters) is refused without quoting it', () => {
    const err = configError(() => loadConfig({ env: { PG_INGRESS_METRICS_AUTH_TOKEN: 'two words' } }));
    expect(err).toBe('PG_INGRESS_METRICS_AUTH_TOKEN: metrics_auth_token: the token must be visible ASCII characters without spaces');
    const path = file('crlf-inside', 'abc\r\ndef\n');
    expect(configError(() => loadConfig({ env: { PG_INGRESS_METRICS_AUTH_TOKEN_FILE: path } }))).toBe(
      'PG_INGRESS_METRICS_AUTH_TOKEN_FILE: metrics_auth_token_file: the token must be visible ASCII characters without spaces',
    );
  });

  test('a missing or empty file is an error naming the key and the path', () => {
    expect(configError(() => loadConfig({ env: { PG_INGRESS_METRICS_AUTH_TOKEN_FILE: '/nonexistent/token' } }))).toBe(
      'PG_INGRESS_METRICS_AUTH_TOKEN_FILE: metrics_auth_token_file: cannot read "/nonexistent/token": ENOENT',
    );
    expect(configError(() => loadConfig({ env: {}, overrides: { metrics_auth_token_file: file('empty-token', '\n') } }))).toMatch(
      /^overrides: metrics_auth_token_file: ".*empty-token" is empty$/,
    );
  });

  test('both in one place is an error; a higher layer choosing one replaces the other from below', () => {
    const both = file('both.yaml', 'metrics_auth_token: hunter2\nmetrics_auth_token_file: /x\n');
    const err = configError(() => loadConfig({ file: both, env: {} }));
    expect(err).toBe(`${both}, ${both}: metrics_auth_token and metrics_auth_token_file are both set; set only one`);
    expect(err).not.toContain('hunter2');
    const lower = file('lower.yaml', 'metrics_auth_token_file: /nonexistent/token\n');
    expect(loadConfig({ file: lower, env: { PG_INGRESS_METRICS_AUTH_TOKEN: 'env-tok' } }).metrics_auth_token).toBe('env-tok');
  });
});
