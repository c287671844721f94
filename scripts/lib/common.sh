# Shared by MyRT's scripts: locating (or installing) the pinned Deno, installing missing Debian
# packages when we may, and running a command in a network namespace that has only loopback.

MYRT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Puts a deno on PATH: $DENO, the pinned npm one (installed with npm ci/install if missing), or
# one already on PATH.
ensure_deno() {
  if [ -n "${DENO:-}" ] && [ -x "$DENO" ]; then return 0; fi
  if [ ! -x "$MYRT_ROOT/scripts/toolchain/node_modules/.bin/deno" ]; then
    if command -v npm >/dev/null 2>&1; then
      echo "myrt: installing the pinned Deno from npm" >&2
      (cd "$MYRT_ROOT/scripts/toolchain" && npm install --no-audit --no-fund --loglevel=error >&2)
    fi
  fi
  if [ -x "$MYRT_ROOT/scripts/toolchain/node_modules/.bin/deno" ]; then
    DENO=$(readlink -f "$MYRT_ROOT/scripts/toolchain/node_modules/.bin/deno")
    # The npm wrapper is a node script; prefer the native binary it launches.
    for cand in "$MYRT_ROOT"/scripts/toolchain/node_modules/@deno/*/deno "$MYRT_ROOT/scripts/toolchain/node_modules/deno/deno"; do
      if [ -x "$cand" ] && "$cand" --version >/dev/null 2>&1; then DENO=$cand; break; fi
    done
  elif command -v deno >/dev/null 2>&1; then
    DENO=$(command -v deno)
  else
    echo "myrt: no deno: install Node.js and npm, then run this again" >&2
    return 1
  fi
  export DENO
}

# Installs the Debian packages named, those whose command is missing, when running as root with
# apt-get; otherwise says what is missing. Arguments: "command:package" pairs.
ensure_packages() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "myrt: installing ${missing[*]}" >&2
    apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  else
    echo "myrt: missing packages: ${missing[*]} (install them, e.g. apt-get install ${missing[*]})" >&2
    return 1
  fi
}

# Makes sure clang can link libFuzzer with ASan and UBSan (Debian: clang and libclang-rt-*-dev),
# installing them when running as root with apt-get; otherwise says what is missing.
ensure_libfuzzer() {
  ensure_packages clang:clang make:make || return 1
  local probe='int LLVMFuzzerTestOneInput(const char *d, long n) { return d && n < 0; }'
  clang_links() { echo "$probe" | clang -x c -fsanitize=fuzzer,address,undefined -o /dev/null - 2>/dev/null; }
  clang_links && return 0
  local rt
  rt="libclang-rt-$(clang -dumpversion | cut -d. -f1)-dev"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "myrt: installing $rt" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$rt" >&2
    clang_links && return 0
  fi
  echo "myrt: clang cannot link libFuzzer: install $rt" >&2
  return 1
}

# Runs "$@" in a new network namespace with only loopback up, so that no packet for a virtual
# address can leave the machine: `unshare -n` as root, `unshare -rn` (user namespace) otherwise.
in_loopback_netns() {
  local flags=-n
  [ "$(id -u)" = 0 ] || flags=-rn
  unshare $flags -- bash -c 'ip link set lo up && exec "$@"' in_loopback_netns "$@"
}

# Runs a UVPN benchmark on a loopback overlay (TS_FILE, with the arguments after it) in a
# network namespace with only loopback, after the packages it needs, Deno and native/.
loopback_overlay_bench() {
  local ts=$1
  shift
  ensure_packages cc:gcc make:make iperf3:iperf3 python3:python3 unshare:util-linux ip:iproute2
  ensure_deno
  make -s -C native
  in_loopback_netns "$DENO" run --allow-all --no-prompt "$ts" "$@"
}
