#!/usr/bin/env bash
# Runs every libFuzzer harness of native/fuzz/ (built with clang, ASan and UBSan by
# `make -C native fuzz`) over its committed seed corpus in tests/fuzz/corpus/NAME/, with the
# dictionary in tests/fuzz/dict/NAME.dict where there is one. New interesting inputs go to a
# scratch corpus under native/build/fuzz/work/ (the committed corpus is only read); a crash, leak
# or sanitizer report stops that harness, keeps the input under native/build/fuzz/crashes/ and
# makes the script fail: copy it into the corpus as regress-NAME-WHAT to keep it forever.
#   ./scripts/fuzz.sh [SECONDS]      each harness for SECONDS (default 10)
#   ./scripts/fuzz.sh --runs N       each harness for N executions (CI: 1000000)
#   ./scripts/fuzz.sh ... -- NAME... only these harnesses
# Harnesses run MYRT_FUZZ_JOBS at a time (default: the number of cores).
# Ends with a line "N passed, N failed" (one per harness).
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$MYRT_ROOT"
limit=(-max_total_time=10)
case "${1:-}" in
  --runs) limit=(-runs="${2:?--runs takes a number}"); shift 2 ;;
  -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "" | --) ;;
  *) limit=(-max_total_time="$1"); shift ;;
esac
[ "${1:-}" = -- ] && shift
ensure_libfuzzer || exit 1
make -s -j"$(nproc 2>/dev/null || echo 1)" -C native fuzz || { echo "0 passed, 1 failed"; exit 1; }
names=("$@")
[ ${#names[@]} -eq 0 ] && names=($(make -s -C native -pn 2>/dev/null | sed -n 's/^FUZZERS = //p'))
build=native/build/fuzz
jobs=${MYRT_FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}

# Runs one harness; its exit status is the fuzzer's.
fuzz_one() {
  local name=$1 work="$build/work/$1" crashes="$build/crashes" dict=()
  mkdir -p "$work" "$crashes"
  [ -f "tests/fuzz/dict/$name.dict" ] && dict=(-dict="tests/fuzz/dict/$name.dict")
  "$build/$name" "${limit[@]}" "${dict[@]}" -max_len=4096 -timeout=10 -rss_limit_mb=1024 \
    -print_final_stats=1 -artifact_prefix="$crashes/$name-" "$work" "tests/fuzz/corpus/$name" >"$build/$name.log" 2>&1
}

# The slowest first (by the last run's executions per second, when there was one), so that the
# jobs end together.
order=($(for name in "${names[@]}"; do
  rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$build/$name.log" 2>/dev/null | tail -n 1)
  echo "${rate:-0} $name"
done | sort -n | awk '{ print $2 }'))
declare -A pid_of rc_of
for name in "${order[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
  fuzz_one "$name" &
  pid_of[$name]=$!
done
for name in "${names[@]}"; do
  wait "${pid_of[$name]}"
  rc_of[$name]=$?
done
passed=0 failed=0
for name in "${names[@]}"; do
  log="$build/$name.log" rc=${rc_of[$name]}
  runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -n 1)
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "fuzz $name: ${runs:-?} executions, no crash"
  else
    failed=$((failed + 1))
    echo "fuzz $name: FAILED after ${runs:-?} executions (exit $rc); log: $log" >&2
    grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$log" | head -n 8 >&2
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
