#!/usr/bin/env bash
# Regenerates the README's dashboard screenshots (docs/*.png): runs the built `wiretrail up` on a
# temporary data dir with cluster_mix imported, drives the browser flows of tests/ui/dashboard.py
# (Debian Chromium + Playwright for Python, as the test does) and copies one picture per view.
#   ui/screenshots.sh        (after ./dev.sh test or ./dev.sh up has built the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
B="$(./dev.sh target-dir)/release/wiretrail"
[ -x "$B" ] || { echo "build first: ./dev.sh test" >&2; exit 2; }
corpus=../shared/corpus
tmp=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hp=$(port); fp=$(port); sp=$(port)
"$B" up --no-capture --data "$tmp/data" --listen 127.0.0.1:$hp --flight-listen 127.0.0.1:$fp \
  --flight-sql-listen 127.0.0.1:$sp 2>"$tmp/up.log" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:$hp/healthz >/dev/null && break; sleep 0.2; done
"$B" import --server http://127.0.0.1:$fp --identities $corpus/pcaps/cluster_mix.identities.json \
  $corpus/pcaps/cluster_mix.pcap >/dev/null
python3 tests/ui/dashboard.py --url http://127.0.0.1:$hp --flight http://127.0.0.1:$fp --bin "$B" \
  --corpus $corpus --out "$tmp/shots" | tail -1
mkdir -p docs
cp "$tmp/shots/traffic-detail-request.png" docs/dashboard-traffic.png
cp "$tmp/shots/map-compare.png" docs/dashboard-map-compare.png
cp "$tmp/shots/snapshots.png" docs/dashboard-snapshots.png
cp "$tmp/shots/sql.png" docs/dashboard-sql.png
echo "docs/dashboard-*.png updated"
