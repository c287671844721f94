#!/usr/bin/env bash
# Installs MyRT into PREFIX (default $HOME/myrt) without root: builds native/ with the system cc,
# then copies the pinned Deno runtime, the sources and libuvpn.so there (scripts/install.ts),
# and packs that PREFIX into PREFIX/bin/myrt, the one-file distribution that ussh sends to
# host_B and that can be copied to any other host (scripts/lib/pack.sh).
# Usage: ./scripts/install.sh [PREFIX]
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
. "$(dirname "$0")/lib/pack.sh"
case "${1:-}" in
  -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
ensure_packages objdump:binutils sha256sum:coreutils gzip:gzip tar:tar
ensure_deno
make -s -C "$MYRT_ROOT/native"
"$DENO" run --quiet --no-prompt --allow-read --allow-write --allow-env --allow-run \
  --config "$MYRT_ROOT/deno.json" "$MYRT_ROOT/scripts/install.ts" "$@"
prefix=$(cd "${1:-$HOME/myrt}" && pwd)
pack_prefix "$prefix" "$prefix/bin/myrt"
# As `myrt install` records: this PREFIX holds that payload, so `myrt TOOL` runs its commands.
sed -n "s/^SHA256='\([0-9a-f]*\)'$/\1/p" "$prefix/bin/myrt" | head -n 1 > "$prefix/lib/myrt/PAYLOAD"
echo "  one file: $prefix/bin/myrt (copy it to a head node: ~/myrt/bin/myrt install)"
