#!/usr/bin/env bash
# Benchmark (not a test): the UVPN direct path inside one site, in one run on loopback, side by
# side: iperf3 with 128 KiB and 100-byte writes and connects/s of a python3 client, natively,
# and under libuvpn.so and under the seccomp supervisor, each over the direct path (brokered by
# the home router) and relayed through it (UVPN_DIRECT=never). Prints the figures and the ratios
# to native. Runs in a network namespace with only loopback, like the tests.
#   ./scripts/bench/uvpn_direct.sh [SECONDS_PER_IPERF_RUN=3] [CONNECTS=500] [ROUNDS=1]
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
cd "$MYRT_ROOT"
loopback_overlay_bench scripts/bench/uvpn_direct.ts "$@"
