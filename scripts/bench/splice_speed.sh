#!/usr/bin/env bash
# Benchmark (not a test): CPU per GB of a sender and a receiver of 64 KiB frames on loopback TCP,
# the payload copied (writev) or by reference (vmsplice into a pipe, splice into the socket), as
# tried for the routers' links (scripts/bench/c/splice_speed.c, built into native/build).
# Runs the two modes in turns.
#   ./scripts/bench/splice_speed.sh [GB_PER_RUN=5] [PAIRS=3] [FILL=1]
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
ensure_packages cc:gcc
bin="$MYRT_ROOT/native/build/splice_speed"
mkdir -p "$(dirname "$bin")"
cc -O2 -Wall -Wextra -Werror -o "$bin" "$MYRT_ROOT/scripts/bench/c/splice_speed.c"
for _ in $(seq "${2:-3}"); do
  for mode in write splice; do "$bin" "$mode" "${1:-5}" "${3:-1}"; done
done
