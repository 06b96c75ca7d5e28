#!/usr/bin/env bash
# Live capture cost: `wiretrail agent` CPU and RSS while h2load (HTTP/1.1, rate-limited with
# --rps) drives nginx across a veth pair between two network namespaces, at each rate of
# RATES requests/s for DURATION seconds. The agent runs in the root namespace and captures on
# the server's veth (--netns), shipping to a `wiretrail up --no-capture`. Per rate: achieved
# req/s, entries acknowledged, agent CPU (% of one core, from /proc/PID/stat over the run),
# peak RSS (VmHWM) and RSS at the end, kernel drops and shed streams (the agent's /metrics).
#
#   sudo bench/agent_capture.sh
#
# Env: RATES (default "1000 10000 50000"), DURATION (default 20), CLIENTS (default 50),
#      RING_BLOCKS (default 16: --ring-blocks, 1 MiB each).
# Needs root, ip netns, nginx (nginx-light) and h2load (nghttp2-client).
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-$(./dev.sh target-dir)}"
export CARGO_TARGET_DIR="$T"
RATES=${RATES:-"1000 10000 50000"}
DURATION=${DURATION:-20}
CLIENTS=${CLIENTS:-50}
RING_BLOCKS=${RING_BLOCKS:-16}
for b in ip nginx h2load curl; do
  command -v $b >/dev/null || { echo "$b not found (apt-get install iproute2 nginx-light nghttp2-client curl)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces, AF_PACKET)" >&2; exit 1; }
cargo build --release --workspace --all-targets
B="$T/release/wiretrail"

S=wtbS$$ C=wtbC$$ VA=wtbva$$ VB=wtbvb$$
W=$(mktemp -d /tmp/wt-agent-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del $S 2>/dev/null || true
  ip netns del $C 2>/dev/null || true
  ip link del $VA 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
ip netns add $S; ip netns add $C
ip link add $VA type veth peer name $VB
ip link set $VA netns $S; ip link set $VB netns $C
ip -n $S addr add 10.78.0.1/24 dev $VA; ip -n $C addr add 10.78.0.2/24 dev $VB
for n in $S $C; do ip -n $n link set lo up; done
ip -n $S link set $VA up; ip -n $C link set $VB up

cat > "$W/nginx.conf" <<EOF
worker_processes 1;
pid $W/nginx.pid;
error_log $W/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 10.78.0.1:80;
    location / { default_type text/plain; return 200 "hello from nginx\n"; }
  }
}
EOF
ip netns exec $S nginx -c "$W/nginx.conf" -g 'daemon off;' & pids+=($!)

HP=18899 FP=18900 SP=18901 MP=19100
"$B" up --no-capture --data "$W/data" --listen 127.0.0.1:$HP --flight-listen 127.0.0.1:$FP \
  --flight-sql-listen 127.0.0.1:$SP 2>"$W/up.log" & pids+=($!)
until curl -sf http://127.0.0.1:$HP/healthz >/dev/null; do sleep 0.2; done
"$B" agent --server http://127.0.0.1:$FP --node bench --interface $VA --netns /run/netns/$S \
  --ring-blocks $RING_BLOCKS --metrics-listen 127.0.0.1:$MP 2>"$W/agent.log" & AGENT=$!; pids+=($AGENT)
until curl -sf http://127.0.0.1:$MP/healthz >/dev/null; do sleep 0.2; done
echo "ring: $RING_BLOCKS x 1 MiB; agent RSS idle: $(awk '/VmRSS/ { print $2 / 1024 " MB" }' /proc/$AGENT/status)"

metric() { curl -s http://127.0.0.1:$MP/metrics | awk -v m="$1" '$1 == m { print $2 }'; }
entries() { curl -s http://127.0.0.1:$MP/metrics | awk '/^wiretrail_agent_entries_total/ { n += $2 } END { print n + 0 }'; }
cpu_ticks() { awk '{ print $14 + $15 }' /proc/$AGENT/stat; }
HZ=$(getconf CLK_TCK)

echo "| offered req/s | achieved req/s | entries | agent CPU (% of a core) | peak RSS MB | kernel drops | shed streams |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for R in $RATES; do
  n=$((R * DURATION))
  per_client=$(( (R + CLIENTS - 1) / CLIENTS ))
  d0=$(metric wiretrail_agent_kernel_drops_total); s0=$(metric wiretrail_agent_shed_streams_total)
  a0=$(entries)
  t0=$(cpu_ticks); w0=$(date +%s.%N)
  peak=0
  ip netns exec $C h2load --h1 -n $n -c $CLIENTS --rps $per_client http://10.78.0.1/ >"$W/h2load.txt" 2>&1 &
  H=$!
  while kill -0 $H 2>/dev/null; do
    rss=$(awk '/VmRSS/ { print $2 }' /proc/$AGENT/status)
    [ "$rss" -gt "$peak" ] && peak=$rss
    sleep 0.5
  done
  wait $H || true
  t1=$(cpu_ticks); w1=$(date +%s.%N)
  sleep 3 # the last batches leave once a second
  d1=$(metric wiretrail_agent_kernel_drops_total); s1=$(metric wiretrail_agent_shed_streams_total)
  a1=$(entries)
  achieved=$(awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($i ~ /req\/s/) { print $(i-1); exit } }' "$W/h2load.txt")
  cpu=$(echo "($t1 - $t0) / $HZ / ($w1 - $w0) * 100" | bc -l)
  printf "| %d | %s | %d | %.0f | %.0f | %d | %d |\n" "$R" "${achieved:-?}" $((a1 - a0)) "$cpu" \
    "$(echo "$peak / 1024" | bc -l)" $((d1 - d0)) $((s1 - s0))
done
echo
echo "agent VmHWM (peak RSS over the whole run): $(awk '/VmHWM/ { print $2 / 1024 " MB" }' /proc/$AGENT/status)"
