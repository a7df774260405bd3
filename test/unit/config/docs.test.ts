// docs/configuration.md is the reference: it must name every key and variable we read.
import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { BITNAMI_VARS, pgIngressVar } from '../../../src/config/index.js';
import { CONFIG_KEYS, SCALAR_KEYS } from '../../../src/config/schema.js';

const doc = readFileSync('docs/configuration.md', 'utf8');

test('every setting has a row in the settings table', () => {
  for (const key of CONFIG_KEYS) expect(doc).toContain(`| \`${key}\` |`);
});

test('every PG_INGRESS_<KEY> and Bitnami variable is documented', () => {
  for (const key of SCALAR_KEYS) expect(doc).toContain(`\`${pgIngressVar(key)}\``);
  for (const [name] of BITNAMI_VARS) expect(doc).toContain(`| \`${name}\` |`);
  for (const name of ['PGBOUNCER_DSN_0', 'PGBOUNCER_DATABASE', 'POSTGRESQL_HOST', 'POSTGRESQL_PORT', 'POSTGRESQL_PASSWORD']) {
    expect(doc).toContain(name);
  }
});
