// Where the demo looks for initdb and pg_ctl: PATH first (through symlinks),
// then the install places, which PG_INGRESS_DEMO_PG_BIN_DIRS replaces.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BIN_DIRS_ENV, findServerBinaries, NO_SERVER_BINARIES } from '../../../src/demo/server-binaries.js';

let root: string;

function binDir(name: string, tools = ['initdb', 'pg_ctl']): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  for (const tool of tools) writeFileSync(join(dir, tool), '', { mode: 0o755 });
  return dir;
}

describe('findServerBinaries', () => {
  beforeEach(() => void (root = mkdtempSync(join(tmpdir(), 'pg-ingress-bins-'))));
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('follows initdb on PATH to the directory it really lives in', () => {
    const real = binDir('pg/17/bin');
    const onPath = join(root, 'usr-bin');
    mkdirSync(onPath);
    symlinkSync(join(real, 'initdb'), join(onPath, 'initdb'));
    expect(findServerBinaries({ PATH: `/nonexistent:${onPath}`, [BIN_DIRS_ENV]: '' })).toBe(real);
  });

  it('takes the first listed place that has both initdb and pg_ctl', () => {
    const clientOnly = binDir('client', ['initdb']);
    const server = binDir('server');
    expect(findServerBinaries({ PATH: '', [BIN_DIRS_ENV]: `${clientOnly}:${server}` })).toBe(server);
  });

  it('finds nothing when neither PATH nor the places have them, and says how to install', () => {
    expect(findServerBinaries({ PATH: '/nonexistent', [BIN_DIRS_ENV]: '/nonexistent' })).toBeNull();
    expect(NO_SERVER_BINARIES).toMatch(/apt-get install postgresql\n/);
    expect(NO_SERVER_BINARIES).toContain('dnf install postgresql-server');
    expect(NO_SERVER_BINARIES).toContain('brew install postgresql@17');
    expect(NO_SERVER_BINARIES).toContain('docker compose up --build');
  });
});
