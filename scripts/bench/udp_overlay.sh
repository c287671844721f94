#!/usr/bin/env bash
# Benchmark (not a test): UDP datagram rate and loss, directly on loopback vs through the overlay
# (two routers, preload mode) with routers carrying UDP as UDP and inside a TCP carrier, in one
# run: iperf3 -u with 100-byte and 1200-byte datagrams, paced and flooding. Runs in a network
# namespace with only loopback, like the tests.
#   ./scripts/bench/udp_overlay.sh [SECONDS_PER_RUN=3] [PACED_RATE=50M]
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
cd "$MYRT_ROOT"
ensure_packages cc:gcc make:make iperf3:iperf3 unshare:util-linux ip:iproute2
ensure_deno
make -s -C native
in_loopback_netns "$DENO" run --allow-all --no-prompt scripts/bench/udp_overlay.ts "$@"
