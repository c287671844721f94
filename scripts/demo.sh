#!/usr/bin/env bash
# MyRT demo, self-contained on loopback, in a network namespace with only loopback.
#
# Part 1, UVPN: installs MyRT into a temporary PREFIX, starts the UVPN routers of two subnets
# (100.64.0.0/16 on 127.0.0.2, 100.65.0.0/16 on 127.0.0.3), and has an unmodified curl in subnet A
# fetch a page from an unmodified python3 http.server in subnet B, using the seed's wrapper script.
#
# Part 2, XUFS: starts a throwaway OpenSSH server as the current user on 127.0.0.1:2222 (its own
# host key, a user key made for the demo, a separate HOME for "host B"), then runs ussh against it
# from a temporary "host A" home: B lists A's home under ~/xufs-rhome, reads a file, edits one
# (sed -i, echo >>) and creates one, and the changes show on A; a change made on A shows on B.
#
# Every process it starts is stopped by pid at the end, and its temporary directory (in $TMPDIR,
# default /tmp) removed. Exit status 0 when every step did what it shows, 1 otherwise.
#
# MYRT_BIN=DIR uses the commands installed in DIR (e.g. ~/myrt/bin) instead of installing this
# tree; MYRT_DEMO_ONLY=uvpn runs Part 1 alone. `--inside UID GID` (the demo's own re-run, also
# used by tests that made the namespace) skips the set-up and runs in the current network
# namespace, which must have only loopback.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

if [ "${1:-}" != "--inside" ]; then
  ensure_packages cc:gcc make:make curl:curl python3:python3 unshare:util-linux ip:iproute2 ps:procps \
    ssh:openssh-client ssh-keygen:openssh-client /usr/sbin/sshd:openssh-server
  [ -n "${MYRT_BIN:-}" ] || ensure_deno
  exec bash -c '. "$1"; in_loopback_netns bash "$2" --inside "$3" "$4"' demo \
    "$MYRT_ROOT/scripts/lib/common.sh" "$0" "$(id -u)" "$(id -g)"
fi

# Not root: `unshare -rn` made us root of a user namespace, where sshd would want privileges it
# cannot have. Become our own user again inside it (the network namespace stays the same), so sshd
# runs unprivileged, as it does for any user, and logs in only that user.
if [ "$(id -u)" != "$2" ]; then
  unshare --help | grep -q -- --map-user ||
    { echo "demo: unshare has no --map-user (util-linux 2.38 or later is needed when not root)" >&2; exit 1; }
  exec unshare --map-user="$2" --map-group="$3" bash "$0" "$@"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/myrt-demo.XXXXXX")
pids=()
# Stops a process and everything below it, by pid.
kill_tree() {
  local c
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do kill_tree "$c"; done
  kill "$1" 2>/dev/null || true
}
cleanup() {
  for p in "${pids[@]}"; do kill_tree "$p"; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export HOME=$work
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
part() { printf '\n\033[1;7m  %s  \033[0m\n' "$*"; }
fail() { printf '\n\033[1;31mdemo: FAILED: %s\033[0m\n' "$*" >&2; exit 1; }

part "Part 1: UVPN, a private IP network through user-level routers"

if [ -n "${MYRT_BIN:-}" ]; then
  bin=$MYRT_BIN
  say "Using the MyRT installed in $bin"
else
  say "Installing MyRT into $work/myrt (no root)"
  "$MYRT_ROOT/scripts/install.sh" "$work/myrt"
  bin=$work/myrt/bin
fi

say "Route table ~/.uvpn_route"
cat > "$HOME/.uvpn_route" <<ROUTES
100.64.0.0   127.0.0.2:7001
100.65.0.0   127.0.0.3:7002
ROUTES
cat "$HOME/.uvpn_route"

say "Starting the subnet routers (the first creates the network key ~/.uvpn_key)"
"$bin/uvpn_proxy" --subnet 100.64.0.0 --listen 127.0.0.2:7001 2> "$work/routerA.log" & pids+=($!)
sleep 1
"$bin/uvpn_proxy" --subnet 100.65.0.0 --listen 127.0.0.3:7002 2> "$work/routerB.log" & pids+=($!)
for _ in $(seq 50); do grep -q serving "$work/routerB.log" 2>/dev/null && break; sleep 0.2; done
cat "$work/routerA.log" "$work/routerB.log"

# The seed's wrapper script, verbatim but for the paths.
cat > "$work/uvpn_wrap" <<WRAP
#!/bin/sh
export UVPN_HOME_PROXY=\$HOST
export UVPN_HOME_PROXY_PORT=\$PORT
SRC_ADDR=\`$bin/uvpn_register -s -r\`
export UVPN_SRC_ADDR=\$SRC_ADDR
LD_PRELOAD=$bin/libuvpn.so exec "\$@"
WRAP
chmod +x "$work/uvpn_wrap"

say "Subnet B: python3 -m http.server 8080, unmodified, on its virtual address"
mkdir "$work/www" && echo "Hello from subnet B, through two UVPN routers." > "$work/www/index.html"
HOST=127.0.0.3 PORT=7002 "$work/uvpn_wrap" sh -c 'echo "server address: $UVPN_SRC_ADDR"; exec python3 -u -m http.server 8080 --bind "$UVPN_SRC_ADDR" --directory '"$work/www" > "$work/server.log" 2>&1 & pids+=($!)
for _ in $(seq 50); do grep -q "Serving HTTP" "$work/server.log" 2>/dev/null && break; sleep 0.2; done
cat "$work/server.log"
server=$(sed -n 's/^server address: //p' "$work/server.log")

say "Subnet A: curl http://$server:8080/"
HOST=127.0.0.2 PORT=7001 "$work/uvpn_wrap" curl -sS --max-time 10 \
  -w '(curl: local %{local_ip}:%{local_port} -> remote %{remote_ip}:%{remote_port})\n' "http://$server:8080/" | tee "$work/page"
grep -q "^Hello from subnet B" "$work/page" || fail "curl did not get the page"

say "What the server saw (the client's virtual address)"
sleep 0.3
tail -n 1 "$work/server.log"
tail -n 1 "$work/server.log" | grep -q '^100\.64\.' || fail "the server did not see a client address of subnet A"
say "Router logs"
for r in A B; do sed -n "s/^uvpn_proxy: relay/router $r: relay/p" "$work/router$r.log"; done
say "Leases of router A"
UVPN_HOME_PROXY=127.0.0.2 UVPN_HOME_PROXY_PORT=7001 "$bin/uvpn_register" --list

if [ "${MYRT_DEMO_ONLY:-}" = uvpn ]; then echo; echo "Demo finished: UVPN worked."; exit 0; fi

part "Part 2: XUFS, host A's home directory under ~/xufs-rhome on host B"

x=$work/xufs
ahome=$work/ahome   # host A: your laptop's home directory
bhome=$x/bhome      # host B: the HOME that sshd gives the login
user=$(id -un)
mkdir -p "$x" "$bhome" "$ahome/subdir1"

say "Host A's home ($ahome): the files ussh will export"
echo "this is file1 on A" > "$ahome/file1"
echo "file2" > "$ahome/file2"
printf '1. plan the run\n2. status: draft\n' > "$ahome/notes.txt"
echo "inner" > "$ahome/subdir1/inner"
(cd "$ahome" && ls -l)

say "Host B: a throwaway sshd as $user on 127.0.0.1:2222 (own host key, a user key made for the demo)"
ssh-keygen -q -t ed25519 -N "" -C myrt-demo-host -f "$x/hostkey"
ssh-keygen -q -t ed25519 -N "" -C myrt-demo-user -f "$x/userkey"
cp "$x/userkey.pub" "$x/authorized_keys"
cat > "$x/sshd_config" <<CONF
Port 2222
ListenAddress 127.0.0.1
HostKey $x/hostkey
PidFile $x/sshd.pid
AuthorizedKeysFile $x/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin yes
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
SetEnv HOME=$bhome
CONF
cat > "$x/ssh_config" <<CONF
Host hostb
  HostName 127.0.0.1
  Port 2222
  User $user
  IdentityFile $x/userkey
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  BatchMode yes
  LogLevel ERROR
CONF
if [ "$(id -u)" = 0 ]; then
  mkdir -p /run/sshd   # root's sshd needs its privilege-separation directory
  # Without PAM, sshd refuses key logins to a locked account ("!" in /etc/shadow).
  case "$(getent shadow root | cut -d: -f2)" in
    '!'*) fail "root's account is locked ('!' in /etc/shadow), so sshd refuses to log root in: run the
  demo as an ordinary user, or allow key logins for root with: usermod -p '*' root" ;;
  esac
fi
/usr/sbin/sshd -D -e -f "$x/sshd_config" 2> "$x/sshd.log" & sshd_pid=$!; pids+=($sshd_pid)
for _ in $(seq 50); do grep -q "Server listening" "$x/sshd.log" 2>/dev/null && break; sleep 0.1; done
grep -q "Server listening" "$x/sshd.log" || { cat "$x/sshd.log" >&2; fail "sshd did not start"; }
sed -n 's/^/sshd: /; /Server listening/p' "$x/sshd.log"
echo "B's home: $bhome (empty: no MyRT there yet)"

# Runs ussh from host A's home, as a user would type it: `ussh hostb 'COMMAND'` (the ssh options
# that reach the demo's sshd come from -F). Shows stderr (ussh's own lines) and stdout; keeps
# stdout in $x/out for the checks. At most 300 s per session.
ussh_step() {
  printf "\033[2mA\$ ussh hostb '%s'\033[0m\n" "$1"
  local rc=0
  (cd "$ahome" && HOME=$ahome timeout 300 "$bin/ussh" -F "$x/ssh_config" hostb "$1") \
    < /dev/null > "$x/out" 2> "$x/err" || rc=$?
  sed 's/^/  (stderr) /' "$x/err"
  sed 's/^/  /' "$x/out"
  if [ "$rc" != 0 ]; then
    echo "sshd's log:" >&2; sed 's/^/  /' "$x/sshd.log" | tail -n 20 >&2
    fail "ussh exited with status $rc"
  fi
}
expect_out() {
  printf '%s' "$1" | cmp -s - "$x/out" || fail "expected on stdout: $(printf '%q' "$1")"
}

say "1. ussh hostb: MyRT is installed on B over ssh, B's shell starts in ~/xufs-rhome and lists A's home"
ussh_step 'pwd; ls -l'
grep -q "installing MyRT" "$x/err" || fail "ussh did not install MyRT on B"
grep -q "XUFS mounting xufs-rhome" "$x/err" || fail "no 'XUFS mounting' line"
[ "$(sed -n 1p "$x/out")" = "$bhome/xufs-rhome" ] || fail "B's shell did not start in ~/xufs-rhome"
for f in file1 file2 notes.txt subdir1; do grep -q " $f\$" "$x/out" || fail "$f not listed on B"; done

say "2. Read a file of A's on B (fetched whole on open, then cached on B)"
ussh_step 'cat ~/xufs-rhome/notes.txt; cat ~/xufs-rhome/subdir1/inner'
expect_out $'1. plan the run\n2. status: draft\ninner\n'

say "3. Edit files on B through ~/xufs-rhome: sed -i, echo >>, and a new file"
ussh_step 'cd ~/xufs-rhome && sed -i "s/draft/final/" notes.txt && echo "3. edited on B" >> notes.txt && echo "written on B" > subdir1/from_b.txt && cat notes.txt'
expect_out $'1. plan the run\n2. status: final\n3. edited on B\n'

say "4. On A, after the session: the changes were written back to A's own files"
printf '\033[2mA$ cat notes.txt subdir1/from_b.txt\033[0m\n'
(cd "$ahome" && cat notes.txt subdir1/from_b.txt) | tee "$x/out" | sed 's/^/  /'
expect_out $'1. plan the run\n2. status: final\n3. edited on B\nwritten on B\n'

say "5. A changes a file; B's next session sees the new content"
printf '\033[2mA$ echo "4. added on A" >> notes.txt\033[0m\n'
echo "4. added on A" >> "$ahome/notes.txt"
ussh_step 'tail -n 2 ~/xufs-rhome/notes.txt'
expect_out $'3. edited on B\n4. added on A\n'

say "6. Nothing left behind: the mount point is gone on B, no process of the sessions runs"
left=""
for _ in $(seq 50); do
  left=$(ps -o pid=,args= --ppid "$sshd_pid" 2>/dev/null || true)
  [ -z "$left" ] && break
  sleep 0.1
done
[ -z "$left" ] || fail "still running under sshd: $left"
[ ! -e "$bhome/xufs-rhome" ] || fail "the mount point $bhome/xufs-rhome is still there"
printf '\033[2mB$ ls -A ~\033[0m\n'
ls -A "$bhome" | sed 's/^/  /'
echo "  (myrt: the copy ussh installed; .xufs: B's cache of A's files and the write-back queue)"
echo
echo "Demo finished: UVPN and XUFS both worked."
