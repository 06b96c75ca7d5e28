#!/usr/bin/env bash
# Import throughput: `wiretrail import --data` on a capture, next to tshark dissecting the same
# capture in the same run. Prints entries/s, MB/s and the ratio.
#
#   bench/import_vs_tshark.sh [PCAP…]
#
# Default input: COPIES (default 100) copies of the corpus' cluster_mix.pcap, each shifted by
# 10 minutes (editcap) and merged into one file (mergecap), so start-up costs do not dominate.
#
# Needs the release binary (./dev.sh test or cargo build --release) and tshark (installed here
# with apt-get if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-$(./dev.sh target-dir)}"
BIN="$T/release/wiretrail"
[ -x "$BIN" ] || cargo build --release --workspace --all-targets
command -v tshark >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark >/dev/null; }
C=../shared/corpus/pcaps
WORK=$(mktemp -d /tmp/wt-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
if [ $# -eq 0 ]; then
  copies=${COPIES:-100}
  for i in $(seq 0 $((copies - 1))); do
    editcap -t $((i * 600)) "$C/cluster_mix.pcap" "$WORK/copy_$i.pcap"
  done
  mergecap -F pcap -w "$WORK/big.pcap" "$WORK"/copy_*.pcap
  rm -f "$WORK"/copy_*.pcap
  set -- "$WORK/big.pcap"
fi
bytes=$(cat "$@" | wc -c)
echo "input: $# file(s), $bytes bytes"

t0=$(date +%s.%N)
"$BIN" import --data "$WORK/data" --format json --node bench \
  --identities "$C/cluster_mix.identities.json" "$@" > "$WORK/summary.json"
t1=$(date +%s.%N)
entries=$(python3 -c "import json;print(json.load(open('$WORK/summary.json'))['entries'])")
wt=$(echo "$t1 - $t0" | bc -l)

t0=$(date +%s.%N)
for f in "$@"; do
  tshark -n -r "$f" -d tcp.port==18080,http -d tcp.port==18081,http -d tcp.port==18084,http -d tcp.port==8080,http \
     -d udp.port==15353,dns -Y 'http.request or dns.flags.response == 0' -T fields -e frame.number -e http.request.method -e dns.qry.name > /dev/null
done
t1=$(date +%s.%N)
ts=$(echo "$t1 - $t0" | bc -l)

disk=$(du -sb "$WORK/data/entries" | cut -f1)
printf '%-10s %8.3f s  %10.0f entries/s  %7.1f MB/s\n' wiretrail "$wt" "$(echo "$entries / $wt" | bc -l)" "$(echo "$bytes / $wt / 1000000" | bc -l)"
printf '%-10s %8.3f s  %10s            %7.1f MB/s\n' tshark "$ts" "" "$(echo "$bytes / $ts / 1000000" | bc -l)"
printf 'ratio (tshark time / wiretrail time): %.2fx   entries: %s   Parquet bytes: %s (%.0f B/entry incl. bodies)\n' \
  "$(echo "$ts / $wt" | bc -l)" "$entries" "$disk" "$(echo "$disk / $entries" | bc -l)"
