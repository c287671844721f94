#!/usr/bin/env bash
# Benchmark (not a test): open() and stat() of cached files through the mount vs directly, on one
# machine (xufs_session --local-export; no ssh). Issue 15's goal: within 1.5 x of a direct open.
#   ./scripts/bench/xufs_open.sh [N=900]
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
cd "$MYRT_ROOT"
ensure_packages cc:gcc make:make python3:python3
ensure_deno
make -s -C native
"$DENO" run --allow-all --no-prompt scripts/bench/xufs_open.ts "$@"
