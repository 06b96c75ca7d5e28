#!/usr/bin/env bash
# Dissection throughput per protocol, wiretrail next to tshark on the same ≥ 200 MB file.
#
# For each protocol group, the group's corpus captures are repeated (time-shifted, see
# repeat_pcap.py) into one pcap of at least $MIN_MB MB under $WORK. Then, in the same run:
#   wiretrail: agent/examples/dissect (pcap → reassembly → detection → dissection → paired
#              entries, one core, no storage)
#   tshark:    tshark -r FILE -d <corpus ports> -T fields -e <the protocol's key fields>
# and the ratio of wall-clock times. Usage: bench/dissect_vs_tshark.sh [GROUP ...]
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=../shared/corpus/pcaps
WORK=${WORK:-/var/tmp/wiretrail-bench}
MIN_MB=${MIN_MB:-200}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(./dev.sh target-dir)}
mkdir -p "$WORK"
command -v tshark >/dev/null || { echo "tshark is needed: apt-get install -y tshark" >&2; exit 1; }
cargo build --release -q --workspace --all-targets  # same features as ./dev.sh: no second DataFusion build
DISSECT=$CARGO_TARGET_DIR/release/examples/dissect

DECODE=(-d tcp.port==18080,http -d tcp.port==18081,http -d tcp.port==18084,http -d tcp.port==18085,http
        -d tcp.port==18082,http2 -d tcp.port==50051,http2 -d tcp.port==18443,tls -d tcp.port==18444,tls
        -d tcp.port==18445,tls -d tcp.port==16379,resp -d tcp.port==35672,amqp -d tcp.port==19092,kafka
        -d udp.port==15353,dns -d tcp.port==15353,dns -d tcp.port==15432,pgsql)

captures() {
  case $1 in
    http1) echo http1_keepalive http1_chunked http1_gzip http1_large_bodies http1_pipelining ;;
    http2) echo http2_h2c_prior_knowledge http2_h2c_upgrade ;;
    grpc) echo grpc_unary_streaming ;;
    graphql) echo graphql_http ;;
    redis) echo redis_cli redis_pipeline redis_pubsub redis_resp3 ;;
    kafka) echo kafka_tansu kafka_tansu_legacy_versions kafka_kcat_apiversions ;;
    amqp) echo amqp_rabbitmq ;;
    dns) echo dns_udp dns_tcp ;;
    tls) echo tls_handshakes http2_tls ;;
    postgres) echo pgsql_psql pgsql_psycopg2 pgsql_psycopg3 ;;
    cluster_mix) echo cluster_mix ;;
  esac
}
fields() {
  case $1 in
    http1|graphql|cluster_mix) echo http.request.method http.request.uri http.response.code ;;
    http2) echo http2.streamid http2.headers.method http2.headers.path http2.headers.status ;;
    grpc) echo http2.streamid http2.headers.path grpc.message_length ;;
    redis) echo resp.bulk_string.value ;;
    kafka) echo kafka.api_key kafka.api_version kafka.correlation_id ;;
    amqp) echo amqp.method.class amqp.method.method amqp.method.arguments.routing_key ;;
    dns) echo dns.id dns.qry.name dns.flags.rcode ;;
    tls) echo tls.handshake.type tls.handshake.extensions_server_name tls.handshake.ciphersuite ;;
    postgres) echo pgsql.type pgsql.query pgsql.tag ;;
  esac
}

GROUPS_TO_RUN=("$@")
[ ${#GROUPS_TO_RUN[@]} -gt 0 ] || GROUPS_TO_RUN=(http1 http2 grpc graphql redis kafka amqp dns tls postgres cluster_mix)
printf '%-12s %8s %9s %11s %10s %9s %8s %7s\n' group MB entries "entries/s" "ours MB/s" "ours s" "tshark s" ratio
for g in "${GROUPS_TO_RUN[@]}"; do
  big=$WORK/$g.pcap
  if [ ! -s "$big" ]; then
    files=()
    for c in $(captures "$g"); do files+=("$CORPUS/$c.pcap"); done
    python3 bench/repeat_pcap.py "$big" "$MIN_MB" "${files[@]}" >/dev/null
  fi
  cat "$big" >/dev/null  # both tools read from the page cache
  ours=$("$DISSECT" "$big")
  ef=()
  for f in $(fields "$g"); do ef+=(-e "$f"); done
  t0=$(date +%s.%N)
  rows=$(tshark -r "$big" "${DECODE[@]}" -T fields "${ef[@]}" 2>/dev/null | grep -c '[^[:space:]]' || true)
  t1=$(date +%s.%N)
  python3 - "$g" "$ours" "$t0" "$t1" "$rows" <<'PY'
import json, sys
g, ours, t0, t1 = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
rows = int(sys.argv[5])
ts = t1 - t0
print(f"{g:<12} {ours['bytes']/1e6:8.1f} {ours['entries']:9d} {ours['entries_per_s']:11,.0f} "
      f"{ours['mb_per_s']:10.1f} {ours['seconds']:9.2f} {ts:8.2f} {ts/ours['seconds']:6.1f}x")
print(f"  ours by protocol: {ours['by_protocol']}  dissect_errors: {ours['dissect_errors']};"
      f"  tshark printed {rows} frames with these fields", file=sys.stderr)
PY
done
