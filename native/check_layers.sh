#!/bin/sh
# check_layers.sh LIB.so OBJ... — fails when the objects of a library break its layering
# (native/README.md). Layers, from the object's source path:
#   0 common/          wire format, SHA-256, logging, clocks and I/O on the real-libc table
#   1 */core/          the library's own logic (uvpn/core: the overlay client; xufs/core)
#   2 */wrap/, supervisor/   what the library exports: interposed wrappers, the FFI entry points
# Two rules, read from the relocations of each object (so a call to a function defined in the
# same file counts too):
#   - an object below layer 2 never refers to a symbol the library exports (an interposed libc
#     name such as write or connect): internal code reaches libc through common/real.h;
#   - no object refers to a symbol defined in a higher layer of the same library.
# Needs nm and objdump (binutils). Prints every violation; exit 1 if there is any.
set -eu
lib=$1
shift

rank() {
  case "$1" in
    */obj/common/*|*/obj/xufs/common/*) echo 0 ;;
    */core/*) echo 1 ;;
    *) echo 2 ;;
  esac
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nm -D --defined-only "$lib" | awk '$2 ~ /^[TWiV]$/ { print $3 }' | sort -u >"$tmp/exported"

# Every global symbol defined by an object, with its layer: "symbol rank object".
for o in "$@"; do
  r=$(rank "$o")
  nm -g --defined-only "$o" | awk -v r="$r" -v o="$o" 'NF == 3 { print $3, r, o }'
done | sort >"$tmp/defined"

bad=0
for o in "$@"; do
  r=$(rank "$o")
  # Symbols named by relocations, without section symbols and addends.
  objdump -r "$o" | awk 'NF == 3 && $1 ~ /^[0-9a-f]+$/ { s = $3; sub(/[-+]0x[0-9a-f]+$/, "", s); if (s !~ /^\./) print s }' |
    sort -u >"$tmp/refs"
  if [ "$r" -lt 2 ]; then
    for s in $(comm -12 "$tmp/refs" "$tmp/exported"); do
      echo "check_layers: $o (layer $r) calls $s, an interposed symbol of $(basename "$lib"): use common/real.h" >&2
      bad=1
    done
  fi
  violations=$(join "$tmp/refs" "$tmp/defined" | awk -v r="$r" -v o="$o" '$2 > r && $3 != o { print $1 " (defined in " $3 ", layer " $2 ")" }')
  if [ -n "$violations" ]; then
    echo "$violations" | while read -r v; do
      echo "check_layers: $o (layer $r) refers upwards to $v" >&2
    done
    bad=1
  fi
done
[ "$bad" = 0 ] && echo "check_layers: $(basename "$lib"): $# objects, no upward calls, no calls to its own wrappers"
exit "$bad"
