#!/usr/bin/env bash
# Builds the one-file distribution DIR/myrt-VERSION-ARCH-linux (DIR defaults to dist/): a shell
# header (scripts/lib/dist_header.sh) and a gzip-compressed tar of a MyRT installed by
# scripts/install.sh into a staging PREFIX (which packs it, scripts/lib/pack.sh), plus its
# .sha256. Usage: ./scripts/dist.sh [DIR]
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
case "${1:-}" in
  -h|--help) sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
ensure_packages objdump:binutils sha256sum:coreutils gzip:gzip tar:tar
ensure_deno
out=${1:-$MYRT_ROOT/dist}
mkdir -p "$out"
stage=$(mktemp -d "${TMPDIR:-/tmp}/myrt-dist.XXXXXX")
trap 'rm -rf "$stage"' EXIT
prefix=$stage/prefix
"$MYRT_ROOT/scripts/install.sh" "$prefix" >/dev/null

# install.sh packed the staged PREFIX into its bin/myrt: that file is the distribution.
name=myrt-$(cat "$prefix/lib/myrt/VERSION")-$(uname -m)-linux
cp "$prefix/bin/myrt" "$out/$name.part" && mv -f "$out/$name.part" "$out/$name"
(cd "$out" && sha256sum "$name" > "$name.sha256")
echo "dist: $out/$name, $(stat -c %s "$out/$name") bytes: $("$out/$name" --version)"
