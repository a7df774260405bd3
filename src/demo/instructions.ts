// What the demo prints once everything runs: commands a person can paste
// as they are, so every value is quoted for libpq and the shell when it needs it.

export interface DemoEndpoints {
  port: number;
  database: string;
  user: string;
  password: string;
  caFile: string;
  metricsUrl: string | null;
  /** The server's major version and the temp dir it lives in (removed on exit). */
  serverVersion: string;
  dir: string;
}

/** A libpq conninfo value: bare when it can be, else single-quoted with \ and ' escaped. */
export function conninfoValue(value: string): string {
  return value !== '' && /^[^\s'\\=]+$/.test(value) ? value : `'${value.replace(/['\\]/g, (c) => `\\${c}`)}'`;
}

/** One shell word: double quotes when nothing in it expands there, else single quotes. */
export function shellWord(value: string): string {
  if (/^[\w@%+=:,./-]+$/.test(value)) return value;
  return /[$`"\\!]/.test(value) ? `'${value.replaceAll("'", `'\\''`)}'` : `"${value}"`;
}

export function psqlCommand(e: DemoEndpoints, database: string, sql?: string): string {
  const conninfo = [`host=localhost`, `port=${e.port}`, `dbname=${database}`, `user=${e.user}`, 'sslmode=verify-full', `sslrootcert=${e.caFile}`]
    .map((pair) => {
      const at = pair.indexOf('=');
      return `${pair.slice(0, at)}=${conninfoValue(pair.slice(at + 1))}`;
    })
    .join(' ');
  return [`PGPASSWORD=${shellWord(e.password)}`, 'psql', shellWord(conninfo), ...(sql ? ['-c', shellWord(sql)] : [])].join(' ');
}

export function instructions(e: DemoEndpoints): string {
  return `
pg-ingress demo: PostgreSQL ${e.serverVersion} behind pg-ingress, TLS required (files in ${e.dir}, removed on exit)

  Connect (the certificate is checked against the demo CA):
    ${psqlCommand(e, e.database)}
  User ${e.user}, password ${e.password}
  Admin console:
    ${psqlCommand(e, 'pgbouncer', 'SHOW POOLS')}
  Metrics: ${e.metricsUrl ?? 'not served (see the log above)'}

Ctrl-C stops it all.
`;
}
