#!/usr/bin/env bash
# MyRT demo, self-contained on loopback: installs MyRT into a temporary PREFIX, starts the UVPN
# routers of two subnets (100.64.0.0/16 on 127.0.0.2, 100.65.0.0/16 on 127.0.0.3), and has an
# unmodified curl in subnet A fetch a page from an unmodified python3 http.server in subnet B,
# using the seed's wrapper script. Runs in a network namespace with only loopback.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

if [ "${1:-}" != "--inside" ]; then
  ensure_packages cc:gcc make:make curl:curl python3:python3 unshare:util-linux ip:iproute2
  ensure_deno
  exec bash -c '. "$1"; in_loopback_netns bash "$2" --inside' demo "$MYRT_ROOT/scripts/lib/common.sh" "$0"
fi

work=$(mktemp -d /tmp/myrt-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export HOME=$work
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Installing MyRT into $work/myrt (no root)"
"$MYRT_ROOT/scripts/install.sh" "$work/myrt"
bin=$work/myrt/bin

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
  -w '(curl: local %{local_ip}:%{local_port} -> remote %{remote_ip}:%{remote_port})\n' "http://$server:8080/"

say "What the server saw (the client's virtual address)"
sleep 0.3
tail -n 1 "$work/server.log"
say "Router logs"
for r in A B; do sed -n "s/^uvpn_proxy: relay/router $r: relay/p" "$work/router$r.log"; done
say "Leases of router A"
UVPN_HOME_PROXY=127.0.0.2 UVPN_HOME_PROXY_PORT=7001 "$bin/uvpn_register" --list
echo
echo "Demo finished."
