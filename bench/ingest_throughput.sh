#!/usr/bin/env bash
# End-to-end ingest throughput: `ingest/examples/ingest_bench` pushes replicated corpus entries
# into a running `wiretrail up` over Flight DoPut (C senders, W unacked batches each), next to
# DuckDB writing the same rows (same source Parquet, replicated the same way) to a ZSTD Parquet
# file in the same run. Prints entries/s, ack latency, ack → visible and bytes/entry on disk,
# with bodies and with bodies stripped (`wiretrail import --body-cap 0`).
#
#   bench/ingest_throughput.sh
#
# Env: ENTRIES (default 2000000), CONCURRENCY (default "2 4"), LABELS (default "bodies nobodies"),
#      WINDOW (default 8),
#      BATCH_ROWS (default 8192), PERF=1 to record the server for 10 s (DWARF call graphs) during
#      the first run and print its top symbols.
# Needs python3 with duckdb (pip install duckdb) for the peer; perf only with PERF=1.
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-$(./dev.sh target-dir)}"
export CARGO_TARGET_DIR="$T"
ENTRIES=${ENTRIES:-2000000}
CONCURRENCY=${CONCURRENCY:-"2 4"}
LABELS=${LABELS:-"bodies nobodies"}
WINDOW=${WINDOW:-8}
BATCH_ROWS=${BATCH_ROWS:-8192}
C=../shared/corpus/pcaps
[ -d "$C" ] || C=/work/shared/corpus/pcaps

# The same build as ./dev.sh (whole workspace, all targets): building one package or one binary
# resolves dependency features differently and recompiles DataFusion.
cargo build --release --workspace --all-targets
python3 -c 'import duckdb' || { echo "python3 -c 'import duckdb' failed: pip install duckdb" >&2; exit 1; }

WORK=$(mktemp -d /tmp/wt-ingest-bench.XXXXXX)
# Private copies: a shared target dir may be rebuilt by another checkout while this runs.
cp "$T/release/wiretrail" "$T/release/examples/ingest_bench" "$WORK/"
BIN="$WORK/wiretrail"
BENCH="$WORK/ingest_bench"
SERVER=
cleanup() {
  if [ -n "$SERVER" ]; then kill -TERM "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# Source rows: the whole corpus imported once with bodies and once without.
import_corpus() { # DIR BODY_CAP
  "$BIN" import --data "$1" --body-cap "$2" --node bench --format json \
    --identities "$C/cluster_mix.identities.json" "$C/cluster_mix.pcap" > /dev/null
  "$BIN" import --data "$1" --body-cap "$2" --node bench --format json \
    --keylog "$C/http2_tls.keylog" --keylog "$C/tls_handshakes.keylog" \
    $(ls "$C"/*.pcap | grep -v cluster_mix) > /dev/null
}
import_corpus "$WORK/src-bodies" 65536 2>/dev/null
import_corpus "$WORK/src-nobodies" 0 2>/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
server_cpu() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$1/stat"; }
field() { sed -n 's/.*[ ]'"$1"'=\([^ ]*\).*/\1/p' <<< " $2"; }

echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (dirty)')"
echo "machine: $(nproc) cores, load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
ROWS=()
run_ours() { # LABEL SOURCE CONCURRENCY PERF
  local label=$1 src=$2 c=$3 perf=$4 data="$WORK/data-$1-c$3"
  local http flight
  http=$(free_port); flight=$(free_port)
  "$BIN" up --data "$data" --listen "127.0.0.1:$http" --flight-listen "127.0.0.1:$flight" \
    --flight-sql-listen "127.0.0.1:$(free_port)" --no-capture 2> "$WORK/up.log" &
  SERVER=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$http/healthz" > /dev/null && break; sleep 0.1; done
  local perf_pid=
  if [ "$perf" = 1 ]; then
    (sleep 2; perf record -F 199 --call-graph dwarf,16384 -o "$WORK/perf.data" -p "$SERVER" -- sleep 10 \
      > /dev/null 2>&1) &
    perf_pid=$!
  fi
  "$BENCH" --source "$src" --flight "http://127.0.0.1:$flight" --http "http://127.0.0.1:$http" \
    --entries "$ENTRIES" -c "$c" -w "$WINDOW" --batch-rows "$BATCH_ROWS" 2> /dev/null | tee "$WORK/out.txt" | sed "s/^/  [$label c=$c] /"
  local cpu; cpu=$(server_cpu "$SERVER")
  # Bytes the server wrote during the run (WAL + flushed Parquet), before the shutdown flush.
  local wrote; wrote=$(awk '/^write_bytes/ {print $2}' "/proc/$SERVER/io")
  if [ -n "$perf_pid" ]; then wait "$perf_pid" || true; fi
  local t0 t1; t0=$(date +%s.%N)
  kill -TERM "$SERVER"; wait "$SERVER" || true; SERVER=
  t1=$(date +%s.%N)
  local r; r=$(grep '^RESULT' "$WORK/out.txt")
  local disk files
  disk=$(du -sb "$data/entries" | cut -f1)
  files=$(find "$data/entries" -name '*.parquet' | wc -l)
  local n; n=$(field entries "$r")
  ROWS+=("$(printf '| wiretrail (%s, C=%s, W=%s) | %s | %s | %s | %s / %s / %s | %s / %s (n=%s) | %s | %.0f | %.2f | %s | %.1f |' \
    "$label" "$c" "$WINDOW" "$n" "$(field secs "$r")" "$(field eps "$r")" \
    "$(field ack_p50_ms "$r")" "$(field ack_p99_ms "$r")" "$(field ack_max_ms "$r")" \
    "$(field vis_p50_ms "$r")" "$(field vis_max_ms "$r")" "$(field vis_n "$r")" \
    "$cpu / $(field client_cpu_s "$r")" "$(echo "$wrote / $n" | bc -l)" "$(echo "$t1 - $t0" | bc -l)" \
    "$files" "$(echo "$disk / $n" | bc -l)")")
}

first_perf=${PERF:-0}
for label in $LABELS; do
  for c in $CONCURRENCY; do
    run_ours "$label" "$WORK/src-$label" "$c" "$first_perf"
    first_perf=0
  done
done

# Peer: DuckDB reads the same source Parquet and writes the same number of rows, replicated the
# same way (source rows in ts order, cycled; ts = t0 + i × 5 µs; fresh 16-byte ids), sorted by
# ts, to one ZSTD Parquet file. Only the COPY is timed.
for label in $LABELS; do
  python3 - "$WORK/src-$label" "$WORK/duck-$label.parquet" "$ENTRIES" <<'EOF' > "$WORK/duck.txt"
import sys, time, os, duckdb
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = duckdb.connect()
con.execute("SET TimeZone='UTC'")
con.execute(f"""CREATE TABLE src AS SELECT *, row_number() OVER (ORDER BY ts) - 1 AS rk
                FROM read_parquet('{src}/entries/**/*.parquet', hive_partitioning=false)""")
k = con.execute("SELECT count(*) FROM src").fetchone()[0]
t0 = int(time.time() * 1e6)
t = time.perf_counter()
con.execute(f"""COPY (
  SELECT * EXCLUDE (rk, g) REPLACE (
           unhex(printf('%016x%08x%08x', {t0} + g * 5, 3735928559, g)) AS id,
           make_timestamp({t0} + g * 5)::TIMESTAMPTZ AS ts)
  FROM range({n}) r(g) JOIN src ON src.rk = g % {k}
  ORDER BY g) TO '{out}' (FORMAT parquet, COMPRESSION zstd)""")
secs = time.perf_counter() - t
print(n, f"{secs:.3f}", round(n / secs), os.path.getsize(out))
EOF
  read -r n secs rps bytes < "$WORK/duck.txt"
  ROWS+=("$(printf '| DuckDB %s (%s, same rows → 1 ZSTD Parquet file) | %s | %s | %s | – | – | – | – | – | 1 | %.1f |' \
    "$(python3 -c 'import duckdb; print(duckdb.__version__)')" "$label" "$n" "$secs" "$rps" "$(echo "$bytes / $n" | bc -l)")")
done

echo
echo "| writer | entries | s | entries/s | ack p50 / p99 / max ms | ack → visible p50 / max ms | CPU s server / client | server disk writes B/entry | shutdown flush s | files | B/entry on disk |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
echo "load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ -f "$WORK/perf.data" ]; then
  echo
  echo "perf: server, 10 s of the first run, top symbols by self time"
  perf report -i "$WORK/perf.data" --no-children --sort symbol --stdio 2> /dev/null \
    | grep -E '^ +[0-9.]+%' | head -15
  echo "perf: selected frames including callees (children)"
  perf report -i "$WORK/perf.data" --children --sort symbol --stdio -g none 2> /dev/null \
    | grep -E 'do_put::|FlightDataDecoder as|decompress_to_buffer|wal::run|wal::encode|libc_write|write_partitioned|take_record_batch|concat_batches|ArrowWriter<W>::write$|clear_page_erms' \
    | cut -c1-150
fi
