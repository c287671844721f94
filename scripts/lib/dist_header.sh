#!/bin/sh
# MyRT @VERSION@ for @ARCH@ Linux in one file: this POSIX shell header, then a gzip-compressed tar
# of a MyRT installed by scripts/install.sh (the Deno runtime, the sources, the module cache and
# the native libraries). Written by scripts/dist.sh from scripts/lib/dist_header.sh.
#
# Every run first checks this file: its size, and the SHA-256 of the whole file read with the 64
# digits of SHA256 below as zeros. Then this host's architecture and glibc. Only then does it
# unpack or run anything. Needs only sh, coreutils, gzip and tar on the host: no root, no Node,
# no Deno, no network, no exec-able /tmp.
VERSION='@VERSION@' COMMIT='@COMMIT@' DENO_VERSION='@DENO_VERSION@' ARCH='@ARCH@'
GLIBC_MIN='@GLIBC_MIN@' TOOLS='@TOOLS@'
HEADER_BYTES=@HEADER_BYTES@ PAYLOAD_BYTES=@PAYLOAD_BYTES@
SHA256='@SHA256@'

usage() {
  cat <<EOF
Usage: myrt install [PREFIX]    install MyRT into PREFIX (default \$HOME/myrt), as
                                scripts/install.sh does: PREFIX/bin gets the commands,
                                libuvpn.so, libmyrt.so, libxufs.so, libxufs_audit.so, myrt
       myrt TOOL [ARGS...]      run a command without installing: $TOOLS
       myrt -V, --version       the version, the commit and the Deno inside; checks this file
       myrt -h, --help          this text

Without installing, the files are unpacked once into \$MYRT_RUN_DIR (default
\$HOME/myrt/lib/run), in a directory named after this file's SHA-256, and reused.
EOF
}

die() { printf 'myrt: %s\n' "$*" >&2; exit 1; }
# The default directories are under $HOME: without it, the user must name one ($1).
need_home() { [ -n "${HOME:-}" ] || die "HOME is not set, so name the directory: $1"; }

# Refuses a truncated or altered copy of this file.
check_copy() {
  command -v sha256sum >/dev/null 2>&1 || die "A command needed to check this file is missing: sha256sum"
  want=$((HEADER_BYTES + PAYLOAD_BYTES))
  size=$(($(wc -c < "$self")))
  [ "$size" -eq "$want" ] ||
    die "This copy of MyRT is truncated or damaged (it should be $want bytes; copy it again): $size bytes"
  zeros=0000000000000000000000000000000000000000000000000000000000000000
  sum=$({ head -c "$HEADER_BYTES" "$self" | sed "s/$SHA256/$zeros/"; tail -c "$PAYLOAD_BYTES" "$self"; } | sha256sum)
  sum=${sum%% *}
  [ "$sum" = "$SHA256" ] ||
    die "This copy of MyRT is altered or damaged (its SHA-256 should be $SHA256; copy it again): $sum"
}

# true when version $1 (MAJOR.MINOR) is older than $2.
older() {
  a=${1%%.*} b=${2%%.*} am=${1#*.} bm=${2#*.}
  [ "$a" -lt "$b" ] || { [ "$a" -eq "$b" ] && [ "${am%%.*}" -lt "${bm%%.*}" ]; }
}

# Refuses a host this build cannot run on.
check_host() {
  os=$(uname -s) arch=$(uname -m)
  [ "$os" = Linux ] || die "This MyRT runs on Linux only: $os"
  [ "$arch" = "$ARCH" ] || die "This MyRT is built for $ARCH and does not run on this host's architecture: $arch"
  libc=$(getconf GNU_LIBC_VERSION 2>/dev/null) || libc=$(ldd --version 2>&1 | head -n 1)
  case $libc in
    "glibc "*) have=${libc#glibc } ;;
    *GLIBC*|*"GNU libc"*) have=${libc##* } ;;
    *) die "This MyRT needs glibc $GLIBC_MIN or later, and this host's C library is not glibc: ${libc:-unknown}" ;;
  esac
  case $have in
    [0-9]*.[0-9]*) ;;
    *) die "This MyRT needs glibc $GLIBC_MIN or later, and this host's glibc version is unreadable: $have" ;;
  esac
  if older "$have" "$GLIBC_MIN"; then
    die "This MyRT needs glibc $GLIBC_MIN or later, and this host has an older one: glibc $have"
  fi
}

# Unpacks the payload into the new directory $1.
unpack() {
  mkdir -p "$1" || die "Cannot create a directory to unpack MyRT into: $1"
  if ! tail -c "$PAYLOAD_BYTES" "$self" | gzip -dc | tar -xf - -C "$1"; then
    rm -rf "$1"
    die "Unpacking MyRT failed (is the disk full?): $1"
  fi
  echo "$SHA256" > "$1/lib/myrt/PAYLOAD"
}

# Installs into PREFIX: replaces lib/myrt whole and each file of bin/ by rename, so that a running
# copy is never overwritten in place, then checks that every command runs (which also fills the
# module cache at its final path).
install_into() {
  [ -n "${1:-}" ] || need_home "myrt install PREFIX"
  prefix=${1:-$HOME/myrt}
  case $prefix in /*) ;; *) prefix=$(pwd)/$prefix ;; esac
  new=$prefix/lib/.myrt-new.$$ old=$prefix/lib/.myrt-old.$$
  mkdir -p "$prefix/bin" || die "Cannot create the directory: $prefix/bin"
  unpack "$new"
  if [ -e "$prefix/lib/myrt" ]; then mv "$prefix/lib/myrt" "$old" || die "Cannot replace: $prefix/lib/myrt"; fi
  mv "$new/lib/myrt" "$prefix/lib/myrt" || die "Cannot move into place: $prefix/lib/myrt"
  for f in "$new"/bin/*; do mv -f "$f" "$prefix/bin/" || die "Cannot move into place: $f"; done
  if [ ! "$self" -ef "$prefix/bin/myrt" ]; then
    cp "$self" "$prefix/bin/myrt.new" && chmod 755 "$prefix/bin/myrt.new" && mv -f "$prefix/bin/myrt.new" "$prefix/bin/myrt" ||
      die "Cannot copy this file to: $prefix/bin/myrt"
  fi
  rm -rf "$new" "$old"
  cmds=
  for t in $TOOLS; do
    out=$("$prefix/bin/$t" --version 2>&1) || die "Installed $t does not run: $out"
    cmds="$cmds $prefix/bin/$t"
  done
  echo "MyRT $VERSION installed in $prefix"
  echo "  commands:$cmds"
  echo "  preload:  $prefix/bin/libuvpn.so"
  echo "  seccomp supervisor: $prefix/bin/libmyrt.so"
  echo "Add $prefix/bin to your PATH."
}

# Runs command $1 of this payload: from the PREFIX this file sits in when that was installed from
# it, else from the run directory, unpacked there once (a concurrent first run loses the rename
# race harmlessly).
run_tool() {
  tool=$1
  shift
  here=${self%/*}/..
  if [ "$(cat "$here/lib/myrt/PAYLOAD" 2>/dev/null)" = "$SHA256" ]; then exec "$here/bin/$tool" "$@"; fi
  [ -n "${MYRT_RUN_DIR:-}" ] || need_home "MYRT_RUN_DIR=DIR"
  dir=${MYRT_RUN_DIR:-$HOME/myrt/lib/run}/$VERSION-${SHA256%"${SHA256#????????????????}"}
  if [ ! -d "$dir" ]; then
    unpack "$dir.part.$$"
    mv -T "$dir.part.$$" "$dir" 2>/dev/null || rm -rf "$dir.part.$$"
  fi
  exec "$dir/bin/$tool" "$@"
}

main() {
  case $self in /*) ;; *) self=$(pwd)/$self ;; esac
  case ${1:-} in
    -h|--help) usage; exit 0 ;;
    "") usage >&2; exit 2 ;;
    -V|--version)
      check_copy
      echo "myrt $VERSION (commit $COMMIT, Deno $DENO_VERSION, $ARCH Linux, glibc $GLIBC_MIN or later)"
      exit 0 ;;
  esac
  check_copy
  check_host
  if [ "$1" = install ]; then
    [ $# -le 2 ] || die "install takes one PREFIX at most: $*"
    shift
    install_into "$@"
    exit 0
  fi
  for t in $TOOLS; do
    if [ "$1" = "$t" ]; then shift; run_tool "$t" "$@"; fi
  done
  die "Unknown command (see myrt --help): $1"
}

self=$0
main "$@"
exit 1
