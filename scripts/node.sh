#!/bin/sh
# Runs the given script with a supported Node: the system one when >= 22,
# otherwise the one scripts/setup.sh brought from the npm registry.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if command -v node >/dev/null 2>&1 && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 22 ]; then
  exec node "$@"
fi
if [ -x "$ROOT/.tools/node/bin/node" ]; then exec "$ROOT/.tools/node/bin/node" "$@"; fi
echo "netfleet: Node >= 22 is needed; run 'npm run setup' first" >&2
exit 1
