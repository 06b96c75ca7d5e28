#!/usr/bin/env bash
# eBPF TLS capture cost: a Python keep-alive HTTPS client sends N requests to a Python `ssl`
# server (both link the system libssl) without capture, then with `wiretrail agent --capture
# ebpf_tls` (probing both ends) shipping to a `wiretrail up --no-capture`. Prints req/s of both
# runs next to each other, the agent's CPU (s and % of one core), peak RSS, probe events,
# ring-buffer drops, and the entries stored (expected: N, one per request).
# The same for M sequential curl processes (a TLS handshake each).
#
#   sudo bench/ebpf_tls.sh            # N=10000 M=500
#
# Needs root (eBPF), python3, openssl, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-$(./dev.sh target-dir)}"
export CARGO_TARGET_DIR="$T"
N=${N:-10000}
M=${M:-500}
for b in python3 openssl curl; do
  command -v $b >/dev/null || { echo "$b not found" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "needs root (eBPF)" >&2; exit 1; }
cargo build --release --workspace --all-targets
B="$T/release/wiretrail"
W=$(mktemp -d /tmp/wt-ebpf-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
  -keyout "$W/key.pem" -out "$W/cert.pem" >/dev/null 2>&1
cat > "$W/server.py" <<'EOF'
import http.server, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[2], sys.argv[3])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        body = b"hello " + self.path.encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print("ready", flush=True); s.serve_forever()
EOF
cat > "$W/client.py" <<'EOF'
import http.client, ssl, sys, time
ctx = ssl._create_unverified_context()
c = http.client.HTTPSConnection("127.0.0.1", int(sys.argv[1]), context=ctx)
n = int(sys.argv[2]); t = time.time()
for i in range(n):
    c.request("GET", "/bench?i=%d" % i); r = c.getresponse(); r.read()
print("%.0f" % (n / (time.time() - t)))
EOF
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SP=$(port); HP=$(port); FP=$(port); QP=$(port); MP=$(port)
python3 "$W/server.py" "$SP" "$W/cert.pem" "$W/key.pem" > "$W/server.out" & pids+=($!)
"$B" up --no-capture --data "$W/data" --listen 127.0.0.1:$HP --flight-listen 127.0.0.1:$FP \
  --flight-sql-listen 127.0.0.1:$QP > "$W/up.log" 2>&1 & pids+=($!)
until grep -q ready "$W/server.out" 2>/dev/null && curl -sf "http://127.0.0.1:$HP/healthz" >/dev/null; do sleep 0.2; done

curls() {
  local s e
  s=$(date +%s.%N)
  for i in $(seq "$M"); do curl -sk -o /dev/null "https://127.0.0.1:$SP/c?i=$i"; done
  e=$(date +%s.%N)
  python3 -c "print('%.0f' % ($M / ($e - $s)))"
}
base_ka=$(python3 "$W/client.py" "$SP" "$N")
base_curl=$(curls)

"$B" agent --server "http://127.0.0.1:$FP" --node ebpf-bench --capture ebpf_tls \
  --metrics-listen 127.0.0.1:$MP > "$W/agent.log" 2>&1 & AP=$!; pids+=($AP)
until curl -sf "http://127.0.0.1:$MP/metrics" >/dev/null; do sleep 0.2; done
grep -q 'wiretrail_capture_enabled{reason="ebpf_tls"} 1' <(curl -s "http://127.0.0.1:$MP/metrics") \
  || { echo "the eBPF probes did not load:"; cat "$W/agent.log"; exit 1; }
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' /proc/$AP/stat; }
c0=$(cpu); t0=$(date +%s.%N)
ka=$(python3 "$W/client.py" "$SP" "$N")
cu=$(curls)
sleep 1
c1=$(cpu); t1=$(date +%s.%N)
metric() { curl -s "http://127.0.0.1:$MP/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
events=$(metric wiretrail_agent_tls_events_total)
drops=$(metric wiretrail_agent_tls_ringbuf_drops_total)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$AP/status)
kill -TERM $AP; wait $AP || true
stored=$(curl -s "http://127.0.0.1:$HP/api/v1/count" --get --data-urlencode 'kfl=node == "ebpf-bench"' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
secs=$(python3 -c "print('%.2f' % (($c1 - $c0) / $tick))")
pct=$(python3 -c "print('%.1f' % (100 * ($c1 - $c0) / $tick / ($t1 - $t0)))")

printf '%-44s %12s %12s\n' "" "no capture" "ebpf_tls"
printf '%-44s %12s %12s\n' "keep-alive client, req/s ($N requests)" "$base_ka" "$ka"
printf '%-44s %12s %12s\n' "sequential curl processes, req/s ($M)" "$base_curl" "$cu"
echo "agent: CPU ${secs} s (${pct}% of one core over the run), peak RSS $((hwm / 1024)) MB"
echo "probe events: $events, ring-buffer drops: $drops"
echo "entries stored: $stored (expected $((N + M)): one per request)"
