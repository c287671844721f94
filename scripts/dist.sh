#!/usr/bin/env bash
# Builds the one-file distribution DIR/myrt-VERSION-ARCH-linux (DIR defaults to dist/): a shell
# header (scripts/lib/dist_header.sh) and a gzip-compressed tar of a MyRT installed by
# scripts/install.sh, plus its .sha256. Usage: ./scripts/dist.sh [DIR]
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

version=$(cat "$prefix/lib/myrt/VERSION")
arch=$(uname -m)
commit=$(git -C "$MYRT_ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && [ -n "$(git -C "$MYRT_ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit=$commit-modified
fi
deno_version=$("$prefix/lib/myrt/deno" --version | sed -n '1s/^deno \([^ ]*\).*/\1/p')
# The oldest glibc every binary inside accepts: the newest GLIBC_x.y version any of them needs.
glibc=$(objdump -T "$prefix/lib/myrt/deno" "$prefix"/bin/*.so | grep -o 'GLIBC_[0-9][0-9.]*' |
  sed 's/^GLIBC_//' | sort -uV | tail -n 1)
tools=$(cd "$prefix/bin" && for f in *; do case $f in *.so) ;; *) printf '%s ' "$f" ;; esac; done)

# Deno's transpile cache is keyed by absolute path, so the staged one is no use elsewhere: the
# payload's module cache goes without it (myrt install fills it in place, as install.sh does).
rm -rf "$prefix/lib/myrt/cache/gen"
tar -C "$prefix" --owner=0 --group=0 --numeric-owner --sort=name -cf - bin lib | gzip -9n > "$stage/payload"
payload_bytes=$(stat -c %s "$stage/payload")

# The header with SHA $1; its own length goes into it too, so iterate until that is stable.
header_bytes=0
header() {
  sed -e "s|@VERSION@|$version|; s|@COMMIT@|$commit|; s|@DENO_VERSION@|$deno_version|" \
    -e "s|@ARCH@|$arch|; s|@GLIBC_MIN@|$glibc|; s|@TOOLS@|${tools% }|" \
    -e "s|@HEADER_BYTES@|$header_bytes|; s|@PAYLOAD_BYTES@|$payload_bytes|; s|@SHA256@|$1|" \
    "$MYRT_ROOT/scripts/lib/dist_header.sh"
}
zeros=$(printf '0%.0s' $(seq 64))
until [ "$(header "$zeros" | wc -c)" -eq "$header_bytes" ]; do header_bytes=$(header "$zeros" | wc -c); done
# The SHA-256 of the whole file with its 64 digits as zeros, as the header checks it.
sha=$({ header "$zeros"; cat "$stage/payload"; } | sha256sum | cut -d' ' -f1)

name=myrt-$version-$arch-linux
{ header "$sha"; cat "$stage/payload"; } > "$out/$name.part"
chmod 755 "$out/$name.part"
mv -f "$out/$name.part" "$out/$name"
(cd "$out" && sha256sum "$name" > "$name.sha256")
echo "dist: $out/$name, $(stat -c %s "$out/$name") bytes: MyRT $version (commit $commit, Deno $deno_version, $arch Linux, glibc $glibc or later)"
