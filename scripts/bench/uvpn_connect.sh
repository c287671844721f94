#!/usr/bin/env bash
# Benchmark (not a test): UVPN connection set-up rate (connect, 1 byte each way, close) natively,
# under libuvpn.so and under the seccomp supervisor, within one subnet and across two; a sustained
# rate to one server, counting lost connections; and the routers' idle cost (RSS per session, CPU)
# with 1,000 and 10,000 open sessions. Runs in a network namespace with only loopback, like the tests.
#   ./scripts/bench/uvpn_connect.sh [CONNECTIONS=20000] [SUSTAIN_SECONDS=600] [RATE=500] [IDLE_SIZES=1000,10000]
#   (INFLIGHT=N: connections in flight at once in the set-up phase, default 32; 1 gives the latency of one;
#    MODES=preload,...: only these of native, preload, seccomp; PATHS=two: only one router or two)
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
cd "$MYRT_ROOT"
ensure_packages cc:gcc make:make python3:python3 unshare:util-linux ip:iproute2
ensure_deno
make -s -C native
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
in_loopback_netns "$DENO" run --allow-all --no-prompt scripts/bench/uvpn_connect.ts "$@"
