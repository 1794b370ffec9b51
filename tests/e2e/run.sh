#!/usr/bin/env bash
# The e2e tier: installs the pinned MCP servers and the MCP SDK (package-lock.json)
# into a directory in the build tree, then runs e2e.test.mjs there.
#   run.sh KEYTRAIL_BINARY WORK_DIR
# E2E_INSTALL_ONLY=1: install and stop (bench/precision drives the servers).
set -euo pipefail
src=$(cd "$(dirname "$0")" && pwd)
bin=$1
dir=$2
command -v node >/dev/null || { echo "e2e: node (20) is required" >&2; exit 1; }
mkdir -p "$dir"
if [ ! -d "$dir/node_modules" ] || ! cmp -s "$src/package-lock.json" "$dir/package-lock.json"; then
	cp "$src/package.json" "$src/package-lock.json" "$dir/"
	(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
# The test files next to their node_modules, so imports resolve.
rm -rf "$dir/lib"
cp -r "$src/lib" "$src"/*.mjs "$dir/"
[ -z "${E2E_INSTALL_ONLY:-}" ] || exit 0
cd "$dir"
KEYTRAIL_BINARY=$bin exec node --test --test-reporter=spec e2e.test.mjs
