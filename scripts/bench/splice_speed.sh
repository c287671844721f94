#!/usr/bin/env bash
# Benchmark (not a test): CPU per GB of a sender and a receiver of 64 KiB frames on loopback TCP,
# the payload copied (writev) or by reference (vmsplice into a pipe, splice into the socket), as
# a router writes its links (scripts/bench/c/splice_speed.c). Runs the two modes in turns.
#   ./scripts/bench/splice_speed.sh [GB_PER_RUN=5] [PAIRS=3] [FILL=1]
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
cd "$MYRT_ROOT"
ensure_packages cc:gcc
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -O2 -Wall -Wextra -Werror -o "$out/splice_speed" scripts/bench/c/splice_speed.c
for _ in $(seq "${2:-3}"); do
  for mode in write splice; do "$out/splice_speed" "$mode" "${1:-5}" "${3:-1}"; done
done
