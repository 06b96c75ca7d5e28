#!/usr/bin/env bash
# The two quick-start commands of wiretrail:
#   ./dev.sh up [ARGS…]   build and run `wiretrail up` (all-in-one, data in ./wiretrail-data)
#   ./dev.sh test         build and run the whole test suite
# Both install the Debian packages the build needs (clang/libclang for RocksDB's bindings) when
# they are missing. Tests that need Python packages (pyarrow, duckdb) install them with pip or
# skip with a printed reason.
set -euo pipefail
cd "$(dirname "$0")"

# One build serves `up`, the tests and the benchmarks (release profile). A target dir outside
# the clone lets later runs of this clone reuse compiled dependencies; it is not needed. It is
# per clone (keyed by the clone's path): cargo decides whether a workspace crate is stale from
# source mtimes, so two clones sharing one target dir can run each other's older builds.
clone_key=$(pwd -P | cksum | cut -d' ' -f1)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/wiretrail-target-$clone_key}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

install_system_packages() {
  local missing=()
  command -v clang >/dev/null 2>&1 || missing+=(clang)
  ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || missing+=(libclang-dev)
  command -v g++ >/dev/null 2>&1 || missing+=(g++)
  # tshark: tests/e2e_snapshot.rs opens the rebuilt PCAP of a snapshot export with it (the
  # test skips with a printed reason without it).
  command -v tshark >/dev/null 2>&1 || missing+=(tshark)
  # Live capture: libpcap compiles `--filter` expressions (loaded at run time); the live
  # capture test (tests/e2e_capture.rs) runs real servers and clients (each part skips with a
  # printed reason when its binary is missing).
  ldconfig -p 2>/dev/null | grep -q 'libpcap\.so' || missing+=(libpcap0.8)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v dnsmasq >/dev/null 2>&1 || missing+=(dnsmasq-base)
  command -v dig >/dev/null 2>&1 || missing+=(bind9-dnsutils)
  # eBPF TLS tests: curl and a Python ssl server (linking the system libssl) with a
  # certificate made by the openssl CLI.
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "dev.sh: installing ${missing[*]} (RocksDB's bindings need clang; the snapshot test needs tshark; live capture and its tests need libpcap, redis, dnsmasq, dig, curl, openssl)" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# The dashboard's browser test (tests/e2e_ui.rs) drives Debian's Chromium with Playwright for
# Python (its own browser download cannot work offline; the wheel brings its node driver).
install_browser_test_tools() {
  if ! command -v chromium >/dev/null 2>&1; then
    echo "dev.sh: installing chromium (the dashboard's browser test)" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null \
      || echo "dev.sh: chromium could not be installed; tests/e2e_ui.rs will skip" >&2
  fi
  if ! python3 -c 'import playwright' >/dev/null 2>&1; then
    echo "dev.sh: installing playwright for Python (the dashboard's browser test)" >&2
    python3 -m pip install -q playwright==1.65.3 \
      || echo "dev.sh: playwright could not be installed; tests/e2e_ui.rs will skip" >&2
  fi
}

cmd="${1:-}"
shift || true
case "$cmd" in
  up)
    install_system_packages
    # The same build as `test` (all targets): building only the binary resolves other
    # dependency features, so `up` after `test` (or the reverse) rebuilt DataFusion (~20 min).
    cargo build --release --workspace --all-targets
    exec "$CARGO_TARGET_DIR/release/wiretrail" up "$@"
    ;;
  test)
    install_system_packages
    install_browser_test_tools
    started=$(date +%s)
    cargo build --release --workspace --all-targets
    echo "dev.sh: build took $(( $(date +%s) - started )) s" >&2
    cargo test --release --workspace -- --test-threads 2
    echo "dev.sh: build + tests took $(( $(date +%s) - started )) s" >&2
    ;;
  target-dir)
    # Where the build lands (benchmarks and the README's examples use it).
    echo "$CARGO_TARGET_DIR"
    ;;
  *)
    echo "usage: ./dev.sh up [wiretrail up options…] | ./dev.sh test | ./dev.sh target-dir" >&2
    exit 2
    ;;
esac
