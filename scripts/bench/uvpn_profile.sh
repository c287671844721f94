#!/usr/bin/env bash
# Benchmark (not a test): where the time of the overlay's data path goes — CPU per
# thread of both routers and strace -c of their data-plane threads during a preload iperf3 run.
# Runs in a network namespace with only loopback. With `perf` (perf installed): perf stat of both
# routers and a perf record -a profile instead of strace.
#   ./scripts/bench/uvpn_profile.sh [WRITE_LEN=128K] [perf]
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
cd "$MYRT_ROOT"
ensure_packages cc:gcc make:make iperf3:iperf3 strace:strace unshare:util-linux ip:iproute2
ensure_deno
make -s -C native
in_loopback_netns "$DENO" run --allow-all --no-prompt scripts/bench/uvpn_profile.ts "$@"
