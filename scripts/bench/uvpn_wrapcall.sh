#!/usr/bin/env bash
# Benchmark (not a test): what libuvpn.so's read/recv/write/send wrappers cost per call on an
# overlay connection, against the same system call made directly (scripts/bench/c/wrapcall.c),
# natively and under preload through both routers. Runs in a network namespace with only loopback.
#   ./scripts/bench/uvpn_wrapcall.sh [CALLS_PER_ROUND=200000]
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
cd "$MYRT_ROOT"
loopback_overlay_bench scripts/bench/uvpn_wrapcall.ts "$@"
