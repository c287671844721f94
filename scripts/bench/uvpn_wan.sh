#!/usr/bin/env bash
# UVPN WAN benchmark: overlay vs direct through the WAN emulator, and restore-to-flow time.
# Usage: ./scripts/bench/uvpn_wan.sh [MiB each way, default 64]
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
ensure_deno
make -s -C "$MYRT_ROOT/native"
in_loopback_netns "$DENO" run -A --no-prompt "$MYRT_ROOT/scripts/bench/uvpn_wan.ts" "$@"
