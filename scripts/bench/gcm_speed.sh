#!/usr/bin/env bash
# Benchmark (not a test): the routers' AES-256-GCM on 64 KiB session frames (GMAC, always on;
# --encrypt's seal and open), for every implementation the CPU has (scripts/bench/c/gcm_speed.c,
# compiled here against native/router/core/gcm.c with the Makefile's -O2).
#   ./scripts/bench/gcm_speed.sh [FRAMES_PER_ROUND=5000] [ROUNDS=5]
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
cd "$MYRT_ROOT"
ensure_packages cc:gcc
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -Inative -o "$out/gcm_speed" scripts/bench/c/gcm_speed.c native/router/core/gcm.c
"$out/gcm_speed" "$@"
