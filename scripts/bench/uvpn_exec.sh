#!/usr/bin/env bash
# Benchmark (not a test): what libuvpn.so's static-program check costs every exec of a dynamic
# program (docs/UVPN.md, "Static programs started by overlay programs"), and what starting a
# static program through the launcher uvpn_supervise costs. A dash loop forks and execs N
# programs; modes take turns for ROUNDS rounds and the median per exec is printed:
#   native           no LD_PRELOAD: /bin/true
#   preload-off      libuvpn.so with UVPN_STATIC=off (no check; as before the check existed)
#   preload          libuvpn.so, the default: each exec opens and reads the program's ELF header
#   static-native    /bin/busybox true (static), no LD_PRELOAD
#   static-launched  /bin/busybox true exec'd by dash under libuvpn.so: through uvpn_supervise
# The overlay variables name a home router nobody serves: exec itself never talks to it.
#   ./scripts/bench/uvpn_exec.sh [N=2000] [ROUNDS=5]
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
cd "$MYRT_ROOT"
ensure_packages cc:gcc make:make dash:dash busybox:busybox-static
make -s -C native
N=${1:-2000}
ROUNDS=${2:-5}
LIB=$MYRT_ROOT/native/build/libuvpn.so
OVERLAY="UVPN_SRC_ADDR=100.64.0.9 UVPN_HOME_PROXY=127.0.0.1 UVPN_HOME_PROXY_PORT=9"

# ns per exec of program $2 in mode $1
one() {
  local env prog=$2
  case $1 in
    native | static-native) env="" ;;
    preload-off) env="$OVERLAY UVPN_STATIC=off LD_PRELOAD=$LIB" ;;
    preload | static-launched) env="$OVERLAY LD_PRELOAD=$LIB" ;;
  esac
  local t0 t1
  t0=$(date +%s%N)
  env $env dash -c "i=0; while [ \$i -lt $N ]; do $prog; i=\$((i+1)); done"
  t1=$(date +%s%N)
  echo $(((t1 - t0) / N))
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

declare -A runs
for ((r = 0; r < ROUNDS; r++)); do
  for m in native preload-off preload; do runs[$m]+="$(one $m /bin/true) "; done
  for m in static-native static-launched; do runs[$m]+="$(one $m '/bin/busybox true') "; done
done
echo "exec cost, median of $ROUNDS rounds of $N fork+exec each ($(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d))"
declare -A med
for m in native preload-off preload static-native static-launched; do
  med[$m]=$(tr ' ' '\n' <<<"${runs[$m]}" | grep . | median)
  printf '  %-16s %8d ns per exec\n' "$m" "${med[$m]}"
done
printf '  static check (preload - preload-off): %d ns per exec of a dynamic program (%.1f%% of preload-off)\n' \
  $((med[preload] - med[preload-off])) "$(awk -v a="${med[preload]}" -v b="${med[preload-off]}" 'BEGIN { print (a - b) * 100 / b }')"
printf '  launcher (static-launched - static-native): %d ns per static program started\n' \
  $((med[static-launched] - med[static-native]))
