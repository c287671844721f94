#!/usr/bin/env bash
# Installs MyRT into PREFIX (default $HOME/myrt) without root: builds native/ with the system cc,
# then copies the pinned Deno runtime, the sources and libuvpn.so there (scripts/install.ts).
# Usage: ./scripts/install.sh [PREFIX]
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
case "${1:-}" in
  -h|--help) sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
ensure_deno
make -s -C "$MYRT_ROOT/native"
exec "$DENO" run --quiet --no-prompt --allow-read --allow-write --allow-env --allow-run \
  --config "$MYRT_ROOT/deno.json" "$MYRT_ROOT/scripts/install.ts" "$@"
