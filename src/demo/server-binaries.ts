// Where the demo finds PostgreSQL's server programs (initdb, pg_ctl, postgres),
// and what it tells a person whose machine has none. Package managers put them
// off PATH more often than on it (Debian, PGDG RPMs, Homebrew's keg-only
// postgresql@N), so the usual install places are searched too.
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';

/** Replaces the install places searched after PATH (a PATH-like list of bin dirs); for tests. */
export const BIN_DIRS_ENV = 'PG_INGRESS_DEMO_PG_BIN_DIRS';

const hasServer = (dir: string): boolean => existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'));

/** `parent/<prefix><version><suffix>` for each version installed there, newest first. */
function versioned(parent: string, prefix: string, suffix: string): string[] {
  if (!existsSync(parent)) return [];
  const versions = readdirSync(parent)
    .filter((entry) => entry.startsWith(prefix) && /^\d+(\.\d+)?$/.test(entry.slice(prefix.length)))
    .map((entry) => entry.slice(prefix.length))
    .sort((a, b) => Number(b) - Number(a));
  return versions.map((v) => join(parent, `${prefix}${v}${suffix}`));
}

/** The install places: Debian/Ubuntu, PGDG RPMs, Homebrew on Apple silicon and on Intel. */
function installPlaces(env: NodeJS.ProcessEnv): string[] {
  const override = env[BIN_DIRS_ENV];
  if (override !== undefined) return override.split(delimiter).filter(Boolean);
  return [
    ...versioned('/usr/lib/postgresql', '', '/bin'),
    ...versioned('/usr', 'pgsql-', '/bin'),
    ...versioned('/opt/homebrew/opt', 'postgresql@', '/bin'),
    ...versioned('/usr/local/opt', 'postgresql@', '/bin'),
  ];
}

/** The directory holding initdb and pg_ctl: next to `initdb` on PATH, else the newest install place; null when none. */
export function findServerBinaries(env: NodeJS.ProcessEnv = process.env): string | null {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    // Through symlinks: pg_ctl finds `postgres` next to its real self.
    if (dir && existsSync(join(dir, 'initdb'))) {
      const real = dirname(realpathSync(join(dir, 'initdb')));
      if (hasServer(real)) return real;
    }
  }
  return installPlaces(env).find(hasServer) ?? null;
}

export const NO_SERVER_BINARIES = `pg-ingress demo: no PostgreSQL server programs found (initdb and pg_ctl on PATH,
or under /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin or Homebrew's postgresql@*/bin).
Install them, then run \`npm run demo\` again:
  Debian/Ubuntu:     sudo apt-get install postgresql
  Fedora:            sudo dnf install postgresql-server
  macOS (Homebrew):  brew install postgresql@17
Or run PostgreSQL and pg-ingress in containers instead: docker compose up --build
`;
