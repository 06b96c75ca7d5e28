#!/usr/bin/env bash
# The kill test's benchmark variant: 100 SIGKILLs of `wiretrail up` while a sender streams
# corpus entries; prints the sender's counters and fails if any acknowledged entry is missing
# or stored twice. Usage: bench/kill_test.sh [KILLS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(./dev.sh target-dir)}"
WIRETRAIL_KILLS="${1:-100}" cargo test --release --workspace --test e2e_kill sigkill_during_ingest -- --nocapture 2>&1 \
  | grep -E "kills in|test result|panicked|assert"
