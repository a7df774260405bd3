import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// `npm run test:docker`: the image and the compose stack, built and run for real.
// Kept out of `npm test`, which must pass on a machine without Docker; only
// dev-init.test.ts (no Docker) also runs there, from .ci/run.
export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  test: {
    include: ['test/docker/**/*.test.ts'],
    // Builds and container starts are slow on a shared 2-core machine.
    testTimeout: 120_000,
    hookTimeout: 600_000,
    fileParallelism: false,
  },
});
