#!/usr/bin/env bash
# Benchmark (not a test): how often a poller sees a parked non-blocking connect look closed
# (POLLHUP/POLLERR) when the socket leaves its holding port for the real destination, for the
# engine's move (disconnect, SO_ERROR, connect), the shortest move (two connects back to back)
# and a TCP simultaneous open from the holding port (no move), with a poller asleep in poll()
# and one polling in a loop (scripts/bench/c/park_race.c). Why the supervisor, which cannot
# interpose poll, waits for the router's answer in the stopped connect (docs/BENCHMARKS.md,
# "UVPN: connection set-up"). Runs in a network namespace with only loopback.
#   ./scripts/bench/park_race.sh [MOVES=2000]
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
cd "$MYRT_ROOT"
ensure_packages cc:gcc unshare:util-linux ip:iproute2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -O2 -Wall -Wextra -Werror -pthread -o "$out/park_race" scripts/bench/c/park_race.c
echo "park_race ($(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC')): sightings of the closed instant per move"
in_loopback_netns "$out/park_race" "${1:-2000}" | awk '{ printf "  %-8s poller %-7s %5d of %d\n", $1, $2, $3, $4 }'
