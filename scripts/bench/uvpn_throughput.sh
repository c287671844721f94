#!/usr/bin/env bash
# Benchmark (not a test): the overlay's data path against native loopback and against two tuned
# C relays (socat -b 262144, the overlay's hop count), in one run: iperf3 at 128 KiB and 100-byte
# writes with 1 and 8 streams, a 64 MiB echo and the connection set-up rate, natively, through
# the socat chain, and through the overlay in preload and seccomp modes. Prints the table and the
# ratios that issue 13's goals name. Runs in a network namespace with only loopback.
#   ./scripts/bench/uvpn_throughput.sh [SECONDS_PER_IPERF_RUN=5] [CONNECTS=2000]
#   (UVPN_BENCH_PATHS=native,socat,preload,seccomp,encrypt: the paths to run, all by default;
#   UVPN_BENCH_ROUTER_ARGS="--session-window 16": extra flags for every router)
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
cd "$MYRT_ROOT"
ensure_packages cc:gcc make:make iperf3:iperf3 python3:python3 socat:socat unshare:util-linux ip:iproute2
ensure_deno
make -s -C native
in_loopback_netns "$DENO" run --allow-all --no-prompt scripts/bench/uvpn_throughput.ts "$@"
