#!/usr/bin/env bash
# Benchmark (not a test): UVPN throughput and connection set-up, native vs preload vs seccomp
# mode, in one run on loopback: iperf3 (a dynamic program, so it runs in all three modes) with
# 100-byte and 128 KiB writes, and connects/s of a python3 client. Prints the figures and the
# ratios (medians of ROUNDS rounds in which the modes take turns). Runs in a network namespace
# with only loopback, like the tests.
#   ./scripts/bench/uvpn_modes.sh [SECONDS_PER_IPERF_RUN=5] [CONNECTS=500] [ROUNDS=3]
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
cd "$MYRT_ROOT"
loopback_overlay_bench scripts/bench/uvpn_modes.ts "$@"
