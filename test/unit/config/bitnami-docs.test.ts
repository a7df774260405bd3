// docs/configuration.md's Bitnami table and BITNAMI_VARIABLES say the same: every
// variable has one row, and its second column is the code's target.
import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { BITNAMI_VARIABLES } from '../../../src/config/env.js';

const doc = readFileSync('docs/configuration.md', 'utf8');
const start = doc.indexOf('## Bitnami pgbouncer image variables');
const section = doc.slice(start, doc.indexOf('\n## ', start + 1));
const plain = (cell: string): string => cell.replaceAll('`', '').trim();

/** Rows of the section's table: variable → its "pg-ingress setting" cell, backticks dropped. */
const rows = section
  .split('\n')
  .filter((line) => line.startsWith('| `'))
  .map((line) => line.split(' | ').map(plain));

test('the section has the table', () => {
  expect(start).toBeGreaterThan(0);
  expect(rows.length).toBeGreaterThan(50);
});

test('one row per variable, in the code\'s order', () => {
  expect(rows.map((r) => r[0]!.replace(/^\| /, ''))).toEqual(BITNAMI_VARIABLES.map((v) => v.name));
});

test.each(BITNAMI_VARIABLES.map((v) => [v.name, v.target]))('%s: %s', (name, target) => {
  const row = rows.find((r) => r[0]!.replace(/^\| /, '') === name);
  expect(row?.[1]).toBe(target);
});
