#!/usr/bin/env bash
# Benchmark (not a test): `python3 -m venv` on B through ussh over an emulated WAN
# (scripts/wan_emulator.ts, 50 ms RTT by default); how long after B is done the venv is complete
# on A (issue 11's goal: within 10 s), and when ussh returns. Needs root (a real sshd on loopback
# plays host B). Runs in a network namespace with only loopback, like the tests.
#   ./scripts/bench/xufs_venv.sh [--rtt-ms 50] [--window-kib 512] [--rate-mbit 1000] [--stripes 4] [--runs 1]
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
cd "$MYRT_ROOT"
ensure_packages cc:gcc make:make ssh:openssh-client python3:python3 unshare:util-linux ip:iproute2
[ -x /usr/sbin/sshd ] || ensure_packages sshd:openssh-server
if ! /usr/bin/python3 -c 'import ensurepip' 2>/dev/null; then
  [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >&2 ||
    { echo "xufs_venv: python3 -m venv needs python3-venv" >&2; exit 1; }
fi
ensure_deno
make -s -C native
in_loopback_netns "$DENO" run --allow-all --no-prompt scripts/bench/xufs_venv.ts "$@"
