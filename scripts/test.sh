#!/usr/bin/env bash
# Runs MyRT's whole test suite: installs what it needs, builds native/, then runs `deno test`
# inside a network namespace that has only loopback; then the native-heavy suites again with the
# three native libraries and the launcher built with AddressSanitizer and UBSan (the sanitizer
# pass). Closes with "N passed, N failed" over both passes.
#   ./scripts/test.sh                   everything: the suite, then the sanitizer pass
#   ./scripts/test.sh PATH...           only these tests (deno test arguments), no sanitizer pass
#   ./scripts/test.sh --sanitize [PATH...]  only the sanitizer pass (default: its suites)
#   ./scripts/test.sh --no-sanitize     the suite without the sanitizer pass
# The whole run (no arguments) also measures line coverage, TypeScript from the suite and C from
# the sanitizer pass, and fails when an area falls below its floor in tests/coverage_floors.json
# (scripts/coverage_check.ts; MYRT_COVERAGE=0 skips it, MYRT_COVERAGE=update raises the floors).
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$MYRT_ROOT"

# The suites whose code is mostly native: the preload libraries and the supervisor at work, and
# the C checkers (tests/native_test.ts: the codecs, and the data plane's sessions under faults).
SANITIZE_SUITES=(tests/uvpn/preload_test.ts tests/uvpn/static_test.ts tests/uvpn/nonblocking_test.ts tests/uvpn/dataport_test.ts
  tests/uvpn/udp_test.ts tests/uvpn/ifaces_test.ts tests/uvpn/supervisor_leak_test.ts
  tests/xufs/conformance_test.ts tests/xufs/preload_test.ts tests/xufs/static_local_test.ts tests/xufs/static_concurrent_test.ts
  tests/xufs/fastopen_test.ts
  tests/native_test.ts)
# Those that run a real sshd on our libraries (about a minute more on the ASan build). They run
# on the coverage build too (sshd's sandbox killed its pre-authentication child when gcov wrote
# its counters at exit, until native/uvpn/wrap/covguard.c); the whole run leaves them out only to
# stay within CI's 15 minutes: MYRT_SANITIZE_SSHD=1 adds them (and their gcov counts), `--sanitize`
# runs them.
SANITIZE_SSHD_SUITES=(tests/uvpn/names_test.ts tests/uvpn/wrappers_test.ts)

# The tests with fast-check properties (or, in wire_diff_test, MYRT_PROPERTY_RUNS mutated inputs).
PROPERTY_SUITES=(tests/router/routes_property_test.ts tests/router/wire_property_test.ts tests/router/wire_diff_test.ts
  tests/router/leases_test.ts tests/xufs/messages_property_test.ts)

mode=both
case "${1:-}" in
  --sanitize) mode=sanitize; shift ;;
  --no-sanitize) mode=plain; shift ;;
  -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) mode=plain ;;
esac

ensure_packages cc:gcc make:make curl:curl python3:python3 socat:socat strace:strace ip:iproute2 \
  unshare:util-linux go:golang-go busybox:busybox-static sshd:openssh-server ssh:openssh-client \
  git:git pgrep:procps tar:tar iperf3:iperf3 objdump:binutils gzip:gzip vi:vim-tiny mpicc.mpich:mpich mpicc.mpich:libmpich-dev \
  mpicc.openmpi:openmpi-bin mpicc.openmpi:libopenmpi-dev slurmctld:slurmctld slurmd:slurmd \
  srun:slurm-client || exit 1
ensure_libfuzzer || exit 1
ensure_deno || exit 1
# The tests' npm packages (deno.json "imports", pinned by deno.lock) are fetched before the
# network namespace: inside it there is no registry.
"$DENO" install --quiet >/dev/null || { echo "test: cannot fetch the tests' npm packages (deno install)" >&2; echo "0 passed, 1 failed"; exit 1; }
jobs=$(nproc 2>/dev/null || echo 1)
make -s -j"$jobs" -C native || { echo "0 passed, 1 failed"; exit 1; }

total_passed=0 total_failed=0 status=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Shared by the run's test files (MyRT installed once for the ussh tests, tests/xufs/hosts.ts).
export MYRT_TEST_RUN_DIR=$work/run
mkdir -p "$MYRT_TEST_RUN_DIR"
coverage=${MYRT_COVERAGE:-1}
[ "$mode" = both ] || coverage=0
cov_args=()
if [ "$coverage" != 0 ]; then
  ensure_packages llvm-cov:llvm || coverage=0
  cov_args=(--coverage="$work/cov" --coverage-raw-data-only)
fi

# Runs deno test on "$@" in the loopback-only namespace; adds its counts to the totals.
run_pass() {
  local log=$work/log rc summary passed failed
  in_loopback_netns "$DENO" test --allow-all --no-prompt ${DENO_TEST_ARGS:-} "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  summary=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -n 1)
  passed=$(sed -nE 's/.*\| ([0-9]+) passed.*/\1/p' <<<"$summary")
  failed=$(sed -nE 's/.*\| ([0-9]+) failed.*/\1/p' <<<"$summary")
  if [ -z "$passed" ]; then passed=0; failed=$(( rc == 0 ? 0 : 1 )); fi
  [ "$rc" -ne 0 ] && [ "${failed:-0}" -eq 0 ] && failed=1
  total_passed=$((total_passed + passed)) total_failed=$((total_failed + ${failed:-0}))
  [ "$rc" -eq 0 ] || status=$rc
  # deno prints its failures above its summary; CI shows only the tail, so the run repeats them
  # (names, then the first lines of their errors) just before the closing line.
  sed 's/\x1b\[[0-9;]*m//g' "$log" | awk '/^ FAILURES *$/ {f = 1; next} /^(ok|FAILED) \|/ {f = 0} f && / => /' >> "$work/failed"
  sed 's/\x1b\[[0-9;]*m//g' "$log" | awk '/^ ERRORS *$/ {e = 1; next} /^ FAILURES *$/ {e = 0} e' | head -n 40 >> "$work/errors"
}

# The sanitizer pass: native/build-asan with clang's ASan + UBSan. The tests preload the ASan
# runtime in front of the instrumented libraries (tests/helpers.ts, MYRT_SANITIZE_RT), and our
# commands run with it preloaded, so the libraries' allocations and libc calls are checked too.
# Deno cannot take an ASan library once it runs, so it opens a plain libmyrt.so for its ABI
# check while the launcher carries the instrumented supervisor (LAUNCHER=static). This clang's
# runtime deadlocks curl, ps and pgrep in setlocale when preloaded (glibc 2.36), so those three
# run through shims that take it out of LD_PRELOAD: an instrumented library then loads it as its
# own dependency, which still checks the library's code. A report stops the process (exit 86),
# so the test that ran it fails and shows it; the pass also fails on any report in its output.
# Arguments: the build directory, extra compiler flags (gcov's), the test paths.
sanitize_pass() {
  local build=$MYRT_ROOT/$1 rtf shim=$work/shim reports p
  rtf=$(clang -print-file-name=libclang_rt.asan-x86_64.so)
  local cflags="-O1 -g -fsanitize=address,undefined -shared-libsan -fno-omit-frame-pointer -fno-sanitize-recover=undefined${2:+ $2}"
  shift 2
  echo "test: sanitizer pass: building native/ with ASan and UBSan in $build"
  # make does not see flags change: a build made with other flags starts over.
  [ "$(cat "$build/.cflags" 2>/dev/null)" = "$cflags" ] || rm -rf "$build"
  mkdir -p "$build" && echo "$cflags" > "$build/.cflags"
  make -s -j"$jobs" -C native BUILD="$build" CC=clang LAUNCHER=static CFLAGS="$cflags" ||
    { total_failed=$((total_failed + 1)); status=1; return; }
  cp native/build/libmyrt.so "$build/libmyrt.so"
  find "$build" -name '*.gcda' -delete
  mkdir -p "$shim"
  for p in curl ps pgrep; do
    printf '#!/bin/sh\nLD_PRELOAD=$(printf %%s ":$LD_PRELOAD:" | sed "s|:%s:|:|g; s|^:||; s|:$||") exec %s "$@"\n' \
      "$rtf" "$(command -v "$p")" > "$shim/$p"
    chmod 755 "$shim/$p"
  done
  PATH=$shim:$PATH LD_LIBRARY_PATH=$(dirname "$rtf")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
    MYRT_SANITIZE_RT=$rtf MYRT_LIBDIR=$build XUFS_PRELOAD=$rtf:$build/libxufs.so MYRT_SHORT_CONNECTIONS=2000 \
    ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0:halt_on_error=1:exitcode=86 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=86 \
    run_pass "$@"
  reports=$(sed 's/\x1b\[[0-9;]*m//g' "$work/log" | grep -cE 'ERROR: (Address|Leak)Sanitizer|runtime error:')
  if [ "$reports" -gt 0 ]; then
    echo "test: sanitizer pass: $reports report(s) in the output above" >&2
    total_failed=$((total_failed + reports)); status=1
  else
    echo "test: sanitizer pass: no ASan or UBSan report"
  fi
}

# Line coverage against tests/coverage_floors.json: the TypeScript of the suite (every deno
# process it started: DENO_COVERAGE_DIR reaches them) and the C of the sanitizer pass (gcov data
# of the instrumented libraries, written at each process's exit).
coverage_check() {
  local gcov=$work/gcov d f update=()
  "$DENO" run --allow-all scripts/coverage_check.ts --prune "$work/cov"
  "$DENO" coverage --lcov --output="$work/lcov.info" "$work/cov" >/dev/null 2>"$work/cov.err" ||
    { cat "$work/cov.err" >&2; total_failed=$((total_failed + 1)); status=1; return; }
  mkdir -p "$gcov"
  for f in $(find native/build-asan-cov -name '*.gcda'); do
    d=$gcov/$(echo "$f" | tr / _)
    # (the objects name their sources relative to native/: links to its folders let gcov read them)
    mkdir -p "$d" && ln -s "$MYRT_ROOT"/native/*/ "$d/" && (cd "$d" && llvm-cov gcov -p "$MYRT_ROOT/$f" >/dev/null 2>&1)
  done
  [ "$coverage" = update ] && update=(--update)
  if "$DENO" run --allow-all scripts/coverage_check.ts --lcov "$work/lcov.info" --gcov "$gcov" "${update[@]}"; then
    total_passed=$((total_passed + 1))
  else
    total_failed=$((total_failed + 1)); status=1
  fi
}

case $mode in
  both)
    if [ "$coverage" != 0 ]; then
      # V8's coverage counters make fast-check's generators about five times slower: under
      # coverage the property tests run 1,000 times each (for their lines), then, outside it, the
      # full count (MYRT_PROPERTY_RUNS, default 100,000).
      MYRT_PROPERTY_RUNS=1000 DENO_TEST_ARGS="${cov_args[*]}" run_pass tests/
      run_pass "${PROPERTY_SUITES[@]}"
    else
      run_pass tests/
    fi
    if [ "$coverage" != 0 ]; then
      sshd_suites=()
      [ "${MYRT_SANITIZE_SSHD:-0}" = 1 ] && sshd_suites=("${SANITIZE_SSHD_SUITES[@]}")
      sanitize_pass native/build-asan-cov "--coverage -DMYRT_COVERAGE" "${SANITIZE_SUITES[@]}" "${sshd_suites[@]}"
      coverage_check
    else
      sanitize_pass native/build-asan "" "${SANITIZE_SUITES[@]}" "${SANITIZE_SSHD_SUITES[@]}"
    fi ;;
  plain) run_pass "${@:-tests/}" ;;
  sanitize)
    if [ $# -gt 0 ]; then sanitize_pass native/build-asan "" "$@"
    else sanitize_pass native/build-asan "" "${SANITIZE_SUITES[@]}" "${SANITIZE_SSHD_SUITES[@]}"; fi ;;
esac
if [ -s "$work/failed" ]; then
  echo "test: the errors of the failed tests (first lines):"
  cat "$work/errors"
  echo "test: failed tests:"
  cat "$work/failed"
fi
echo "${total_passed} passed, ${total_failed} failed"
exit "$status"
