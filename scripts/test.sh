#!/usr/bin/env bash
# Runs MyRT's whole test suite: installs what it needs, builds native/, then runs `deno test`
# inside a network namespace that has only loopback, and closes with "N passed, N failed".
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$MYRT_ROOT"
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
make -s -C native || { echo "0 passed, 1 failed"; exit 1; }
log=$(mktemp)
# Shared by the run's test files (MyRT installed once for the ussh tests); removed at the end.
MYRT_TEST_RUN_DIR=$(mktemp -d)
export MYRT_TEST_RUN_DIR
trap 'rm -rf "$log" "$MYRT_TEST_RUN_DIR"' EXIT
in_loopback_netns "$DENO" test --allow-all --no-prompt "${@:-tests/}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
summary=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -n 1)
passed=$(sed -nE 's/.*\| ([0-9]+) passed.*/\1/p' <<<"$summary")
failed=$(sed -nE 's/.*\| ([0-9]+) failed.*/\1/p' <<<"$summary")
if [ -z "$passed" ]; then passed=0; failed=$(( rc == 0 ? 0 : 1 )); fi
[ "$rc" -ne 0 ] && [ "${failed:-0}" -eq 0 ] && failed=1
echo "${passed} passed, ${failed:-0} failed"
exit "$rc"
