#!/usr/bin/env bash
# Benchmark (not a test): what the seccomp supervisor's XUFS mode costs static programs, and
# what detecting them costs dynamic ones, in an `xufs_session --local-export` session on one
# machine (no ssh, no network). Prints milliseconds and ratios, all measured in the same run:
#   - static busybox `ls -lR` of a cached tree of FILES files (every lstat/openat stopped and
#     answered by the supervisor) vs the same with XUFS_STATIC=off (the cache read raw, no
#     supervisor: what the kernel alone costs) and vs busybox on the exported directory itself;
#   - EXECS runs of a dynamic program (/bin/true) from bash under libxufs.so with the static
#     check of the exec wrappers (an open, a 4 KiB read, a close per exec) vs XUFS_STATIC=off.
# Each figure is the fastest of ROUNDS runs.
#   ./scripts/bench/xufs_static.sh [FILES (2000)] [EXECS (500)] [ROUNDS (5)]
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
cd "$MYRT_ROOT"
files=${1:-2000} execs=${2:-500} rounds=${3:-5}
[ -x /bin/busybox ] || ensure_packages busybox:busybox-static
ensure_deno
make -s -C native
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/exp" "$work/home"
for ((d = 0; d < files / 100; d++)); do
  mkdir "$work/exp/d$d"
  for ((f = 0; f < 100; f++)); do echo "file $f" >"$work/exp/d$d/f$f"; done
done
ms() { date +%s%N | cut -c1-13; }
# Inside the session: each measurement ROUNDS times, the fastest kept (the machine may be shared).
inner='ms() { date +%s%N | cut -c1-13; }
min() { if [ -z "$1" ] || [ "$2" -lt "$1" ]; then echo "$2"; else echo "$1"; fi; }
/bin/busybox ls -lR . >/dev/null  # lists the tree into the cache (warm-up)
for ((r = 0; r < '"$rounds"'; r++)); do
  unset XUFS_STATIC
  t0=$(ms); /bin/busybox ls -lR . >/dev/null; t1=$(ms); sup=$(min "$sup" $((t1 - t0)))
  t0=$(ms); for ((i = 0; i < '"$execs"'; i++)); do /bin/true; done; t1=$(ms); dyn=$(min "$dyn" $((t1 - t0)))
  export XUFS_STATIC=off
  t0=$(ms); /bin/busybox ls -lR . >/dev/null; t1=$(ms); raw=$(min "$raw" $((t1 - t0)))
  t0=$(ms); for ((i = 0; i < '"$execs"'; i++)); do /bin/true; done; t1=$(ms); dynoff=$(min "$dynoff" $((t1 - t0)))
done
echo "$sup $raw $dyn $dynoff"'
out=$(HOME="$work/home" SHELL=/bin/bash XUFS_PRECACHE_MAX=0 \
  "$DENO" run -A --no-prompt cli/xufs_session.ts --local-export "$work/exp" -- "$inner")
read -r sup raw dyn dynoff <<<"$(echo "$out" | tail -1)"
native=
for ((r = 0; r < rounds; r++)); do
  t0=$(ms); /bin/busybox ls -lR "$work/exp" >/dev/null; t1=$(ms)
  [ -z "$native" ] || [ $((t1 - t0)) -lt "$native" ] && native=$((t1 - t0))
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
echo "xufs_static ($(date -u +%F), $files files, $execs execs, fastest of $rounds):"
echo "  busybox ls -lR, supervised:        ${sup} ms"
echo "  busybox ls -lR, no supervisor:     ${raw} ms   (supervised / this: $(ratio "$sup" "$raw") x)"
echo "  busybox ls -lR, on the export:     ${native} ms   (supervised / this: $(ratio "$sup" "$native") x)"
echo "  $execs x /bin/true, static check:  ${dyn} ms"
echo "  $execs x /bin/true, XUFS_STATIC=off: ${dynoff} ms   (with / without: $(ratio "$dyn" "$dynoff") x)"
