#!/usr/bin/env node
// Entry point installed as `pg-ingress`; the TypeScript is compiled to dist/ by `npm ci` (prepare).
import { main } from '../dist/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`pg-ingress: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
