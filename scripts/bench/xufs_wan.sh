#!/usr/bin/env bash
# Benchmark (not a test): XUFS through an emulated WAN (scripts/wan_emulator.ts, 50 ms RTT by
# default) against scp and sshfs, in one run: cold read of a large file (striped, one stream,
# scp, sshfs; warm vs local disk), a tree of small files (ls -lR, grep -r, git status, make;
# XUFS cold and warm vs sshfs), and write-back of the large file vs an scp upload. Prints the
# figures and ratios. Needs root (a real sshd on loopback plays host B). Runs in a network
# namespace with only loopback, like the tests.
#   ./scripts/bench/xufs_wan.sh [--size-mib 256] [--writeback-mib 256] [--files 5000] [--rtt-ms 50] [--window-kib 512]
#                               [--rate-mbit 1000] [--stripes 4|auto] [--sshfs-timeout-s 900] [--precache] [--steps 1,2,3]
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
cd "$MYRT_ROOT"
ensure_packages cc:gcc make:make git:git ssh:openssh-client scp:openssh-client sshfs:sshfs \
  unshare:util-linux ip:iproute2
[ -x /usr/sbin/sshd ] || ensure_packages sshd:openssh-server
ensure_deno
make -s -C native
in_loopback_netns "$DENO" run --allow-all --no-prompt scripts/bench/xufs_wan.ts "$@"
