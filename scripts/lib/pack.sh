# Packs an installed PREFIX (bin/ and lib/myrt, as scripts/install.sh lays them out) into the
# one-file distribution: the shell header scripts/lib/dist_header.sh, then a gzip-compressed tar
# of the PREFIX. Shared by scripts/dist.sh and scripts/install.sh (which packs every PREFIX it
# installs into PREFIX/bin/myrt, the file ussh sends to host_B).
# Usage: pack_prefix PREFIX OUTFILE; sets PACK_SUMMARY to a line describing the file.
pack_prefix() {
  local prefix=$1 outfile=$2 stage
  stage=$(mktemp -d "${TMPDIR:-/tmp}/myrt-pack.XXXXXX") || return 1
  (
    set -euo pipefail
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

    # Deno's transpile cache is keyed by absolute path, so it is no use elsewhere: the payload's
    # module cache goes without it (myrt install fills it in place, as install.sh does). A
    # bin/myrt already there is an earlier pack of this PREFIX, not part of it.
    tar -C "$prefix" --owner=0 --group=0 --numeric-owner --sort=name --exclude=lib/myrt/cache/gen \
      --exclude=bin/myrt --exclude=bin/myrt.new --exclude=lib/myrt/PAYLOAD -cf - bin lib |
      gzip -6n > "$stage/payload"
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

    { header "$sha"; cat "$stage/payload"; } > "$outfile.part"
    chmod 755 "$outfile.part"
    mv -f "$outfile.part" "$outfile"
    echo "$outfile, $(stat -c %s "$outfile") bytes: MyRT $version (commit $commit, Deno $deno_version, $arch Linux, glibc $glibc or later)" > "$stage/summary"
  )
  local rc=$?
  [ "$rc" -eq 0 ] && PACK_SUMMARY=$(cat "$stage/summary")
  rm -rf "$stage"
  return "$rc"
}
