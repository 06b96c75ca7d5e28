#!/usr/bin/env python3
"""Query latency on a large store: wiretrail's REST API next to DuckDB on the same Parquet files.

    python3 bench/query_vs_duckdb.py [--entries 24000000] [--days 3] [--store DIR] [--runs 20]

Builds the store once (kept in --store; a second run reuses it): every corpus capture is imported
(with bodies), then `ingest/examples/ingest_bench` replays those rows through a running
`wiretrail up` with fresh ids and timestamps spread evenly over --days ending an hour ago, and the
server compacts them into hourly files. Then, with the server up on that store and DuckDB reading
the same Parquet files in the same run (metadata cache on, one warm-up run each), it times the
five questions of issue 6 and the two histograms of issue 14 (median of --runs):

  count        entries in a 1-minute window               GET /api/v1/count
  first page   newest 50 matching a KFL header regex        GET /api/v1/entries?kfl=…&limit=50
  by id        one full entry                               GET /api/v1/entries/{id}
  service map  1 hour, grouped by service                   GET /api/v1/servicemap
  group-by     1 day: count, errors, bytes per protocol      POST /api/v1/sql
  histogram    3 days, stacked by status class, 100 buckets GET /api/v1/histogram?buckets=100
               (1-hour buckets, from the rollups)
  histogram    1 hour, the KFL header regex, 60 buckets     GET /api/v1/histogram?kfl=…&buckets=60
               (1-minute buckets, a scan)

wiretrail is timed end to end over HTTP (JSON included); DuckDB in-process, results fetched as
Python tuples. Each answer is checked against DuckDB's before timing. DuckDB is pip-installed
if missing.
"""
import argparse, base64, glob, json, os, shutil, socket, statistics, subprocess, sys, tempfile, time, urllib.parse, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or subprocess.run(
    [os.path.join(ROOT, "dev.sh"), "target-dir"], capture_output=True, text=True, check=True).stdout.strip()
CORPUS = os.path.join(ROOT, "..", "shared", "corpus", "pcaps")
HOUR_US = 3_600_000_000
KFL = 'request.headers["Authorization"] == r"Token.*"'


def entry_id(b):
    """An id as the API spells it (base32hex, lower case, 26 characters)."""
    return base64.b32hexencode(bytes(b)).decode().lower().rstrip("=")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def http(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def timed(fn, runs):
    fn()  # warm-up: page cache and metadata caches on both sides
    out = []
    for _ in range(runs):
        t = time.perf_counter(); fn(); out.append(time.perf_counter() - t)
    return statistics.median(out) * 1000


class Server:
    """`wiretrail up` on a data dir, stopped (flushed) on exit."""

    def __init__(self, binary, data, *extra):
        self.http, self.flight = free_port(), free_port()
        self.proc = subprocess.Popen(
            [binary, "up", "--data", data, "--listen", f"127.0.0.1:{self.http}",
             "--flight-listen", f"127.0.0.1:{self.flight}", "--flight-sql-listen", f"127.0.0.1:{free_port()}",
             "--no-capture", *extra], stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.http}"
        for _ in range(600):
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=1); return
            except Exception:
                time.sleep(0.1)
        raise SystemExit("wiretrail up did not answer /healthz")

    def metric(self, name):
        with urllib.request.urlopen(self.base + "/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
        return None

    def stop(self):
        self.proc.terminate(); self.proc.wait(timeout=600)


def build_store(work, store, entries, days):
    binary = os.path.join(work, "wiretrail")
    src = os.path.join(work, "src")
    ids = os.path.join(CORPUS, "cluster_mix.identities.json")
    subprocess.run([binary, "import", "--data", src, "--node", "bench", "--format", "json", "--identities", ids,
                    os.path.join(CORPUS, "cluster_mix.pcap")], check=True, stdout=subprocess.DEVNULL)
    others = [p for p in sorted(glob.glob(os.path.join(CORPUS, "*.pcap"))) if "cluster_mix" not in p]
    keylogs = sum((["--keylog", k] for k in sorted(glob.glob(os.path.join(CORPUS, "*.keylog")))), [])
    subprocess.run([binary, "import", "--data", src, "--node", "bench", "--format", "json", *keylogs, *others],
                   check=True, stdout=subprocess.DEVNULL)
    senders = 2
    span_s = days * 86400
    rate = max(1, round(entries / senders / span_s))
    t0 = int(time.time() * 1e6) - HOUR_US - int(entries / senders / rate * 1e6)
    srv = Server(binary, store, "--maintenance-interval", "5")
    try:
        started = time.time()
        subprocess.run([os.path.join(work, "ingest_bench"), "--source", src, "--flight", f"http://127.0.0.1:{srv.flight}",
                        "--http", srv.base, "--entries", str(entries), "-c", str(senders), "--ts-rate", str(rate),
                        "--t0-us", str(t0), "--visible-samples", "1"], check=True)
        print(f"store: {entries:,} entries ingested in {time.time() - started:.0f} s; compacting …", flush=True)
        quiet = 0
        while quiet < 3:  # backlog 0 over three maintenance rounds
            time.sleep(5)
            quiet = quiet + 1 if (srv.metric("wiretrail_compaction_backlog") or 0) == 0 else 0
        print(f"store built in {time.time() - started:.0f} s", flush=True)
    finally:
        srv.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=24_000_000)
    ap.add_argument("--days", type=float, default=3)
    ap.add_argument("--store", default="/var/tmp/wiretrail-bench-24m", help="data dir, kept and reused")
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    try:
        import duckdb
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "duckdb"], check=True)
        import duckdb
    work = tempfile.mkdtemp(prefix="wt-qbench-")
    try:
        # Private copies: a shared target dir may be rebuilt by another checkout while this runs.
        for b in ("wiretrail", "examples/ingest_bench"):
            shutil.copy(os.path.join(TARGET, "release", b), work)
        if not os.path.exists(os.path.join(a.store, "index")):
            build_store(work, a.store, a.entries, a.days)
        run(duckdb, os.path.join(work, "wiretrail"), a)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(duckdb, binary, a):
    files = sorted(glob.glob(os.path.join(a.store, "entries", "*", "*", "*.parquet")))
    con = duckdb.connect()
    con.execute("set parquet_metadata_cache = true")
    con.execute(f"create view entries as select * from read_parquet({files!r})")
    rows, lo, hi = con.execute("select count(*), epoch_us(min(ts)), epoch_us(max(ts)) from entries").fetchone()
    size = sum(os.path.getsize(f) for f in files)
    srv = Server(binary, a.store)
    try:
        base = srv.base
        mid = (lo + hi) // 2
        m_from = mid - mid % 60_000_000
        h_from = mid - mid % HOUR_US
        d_from = h_from - 12 * HOUR_US
        window = lambda f, t: f"ts >= make_timestamp({f}) and ts < make_timestamp({t})"
        the_id = con.execute(f"select id from entries where {window(mid, mid + 60_000_000)} limit 1").fetchone()[0]
        id_str = entry_id(the_id)

        def wt_count():
            return http(f"{base}/api/v1/count?from={m_from // 1000}&to={(m_from + 60_000_000) // 1000}")["count"]

        def dd_count():
            return con.execute(f"select count(*) from entries where {window(m_from, m_from + 60_000_000)}").fetchone()[0]

        def wt_page():
            q = urllib.parse.urlencode({"kfl": KFL, "limit": 50})
            return [e["id"] for e in http(f"{base}/api/v1/entries?{q}")["entries"]]

        def dd_page():
            return [entry_id(r[0]) for r in con.execute(
                "select id, ts, protocol, method, path, status, elapsed_us, src_name, dst_name from entries "
                "where regexp_matches(map_extract(request_headers, 'Authorization')[1], 'Token.*') "
                "order by ts desc, id desc limit 50").fetchall()]

        def wt_id():
            return http(f"{base}/api/v1/entries/{id_str}")["id"]

        def dd_id():
            return entry_id(con.execute("select * from entries where id = ?", [the_id]).fetchone()[0])

        def wt_map():
            m = http(f"{base}/api/v1/servicemap?from={h_from // 1000}&to={(h_from + HOUR_US) // 1000}")
            return sum(e["count"] for e in m["edges"])

        def dd_map():
            return sum(r[3] for r in con.execute(
                "select coalesce(nullif(src_service, ''), src_name), coalesce(nullif(dst_service, ''), dst_name), protocol, "
                "count(*), sum(request_size + response_size), quantile_disc(elapsed_us, [0.5, 0.99]) "
                f"from entries where {window(h_from, h_from + HOUR_US)} group by 1, 2, 3").fetchall())

        group_sql = ("select protocol, count(*) as n, sum(case when status >= 500 then 1 else 0 end) as errors, "
                     "sum(request_size + response_size) as bytes, avg(elapsed_us) as avg_us from entries "
                     "{where} group by protocol order by protocol")

        def wt_group():
            r = http(f"{base}/api/v1/sql", {"sql": group_sql.format(where=""), "from": str(d_from // 1000),
                                             "to": str((d_from + 24 * HOUR_US) // 1000)})
            return [(x["protocol"], x["n"]) for x in r["rows"]]

        def dd_group():
            return [(r[0], r[1]) for r in con.execute(
                group_sql.format(where="where " + window(d_from, d_from + 24 * HOUR_US))).fetchall()]

        # The volume histogram, stacked by status class; DuckDB buckets and classifies the same rows
        # (status_class in proto/src/schema.rs). The 3 days end just after the newest entry, off the
        # minute as a browser's window does, so wiretrail reads whole minutes from the rollups and
        # the partial minutes at both ends from rows; the KFL hour is the service map's hour.
        status_class = (
            "case when status is null then 'other' "
            "when protocol in ('http', 'http2', 'graphql') then case "
            "when status between 200 and 299 then '2xx' when status between 300 and 399 then '3xx' "
            "when status between 400 and 499 then '4xx' when status between 500 and 599 then '5xx' "
            "else 'other' end "
            "when (protocol = 'amqp' and status >= 300) or (protocol is distinct from 'amqp' and status <> 0) "
            "then 'error' else 'ok' end")
        t_to = (hi // 1000 + 1) * 1000
        t_from = t_to - 72 * HOUR_US
        sources = {}

        def wt_hist(f, t, n, kfl=""):
            q = urllib.parse.urlencode({"kfl": kfl, "from": f // 1000, "to": t // 1000, "buckets": n, "stack": "status"})
            h = http(f"{base}/api/v1/histogram?{q}")
            sources[n] = (h["source"], h["files_scanned"])
            return h["bucket_us"], {(b["start_us"], s): c for b in h["buckets"]
                                    for s, c in zip(h["series"], b["counts"]) if c}

        def dd_hist(f, t, width, where=""):
            return width, {(b, c): k for b, c, k in con.execute(
                f"select epoch_us(time_bucket(to_microseconds({width}), ts, timestamp '1970-01-01')), "
                f"{status_class}, count(*) from entries where {window(f, t)}{where} group by 1, 2").fetchall()}

        kfl_where = " and regexp_matches(map_extract(request_headers, 'Authorization')[1], 'Token.*')"
        questions = [
            ("count, 1-minute window", wt_count, dd_count, 10),
            ("newest 50 matching the header-regex KFL", wt_page, dd_page, 50),
            ("entry by id (full entry)", wt_id, dd_id, 20),
            ("service map, 1 hour", wt_map, dd_map, 100),
            ("group-by protocol, 1 day", wt_group, dd_group, None),
            ("histogram, 3 days unfiltered, stack=status (100 buckets → 1 h)",
             lambda: wt_hist(t_from, t_to, 100), lambda: dd_hist(t_from, t_to, HOUR_US), 50),
            ("histogram, 1 hour, KFL token regex (60 buckets → 1 min)",
             lambda: wt_hist(h_from, h_from + HOUR_US, 60, KFL),
             lambda: dd_hist(h_from, h_from + HOUR_US, 60_000_000, kfl_where), 300),
        ]
        for name, w, d, _ in questions:
            ours, theirs = w(), d()
            if ours != theirs:
                if isinstance(ours, tuple) and isinstance(theirs, tuple) and isinstance(ours[1], dict):
                    diff = sorted(set(ours[1].items()) ^ set(theirs[1].items()))[:10]
                    raise SystemExit(f"{name}: bucket width {ours[0]} vs {theirs[0]}; cells differing "
                                     f"(first 10 of wiretrail ^ DuckDB): {diff}")
                raise SystemExit(f"{name}: wiretrail {ours!r} != DuckDB {theirs!r}")
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        if subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD"]).returncode:
            commit += " (dirty)"
        print(f"commit {commit}; load before: {open('/proc/loadavg').read().split()[:3]}")
        print(f"store: {rows:,} entries, {len(files)} Parquet files, {size / 2**20:,.0f} MiB, "
              f"{(hi - lo) / 86400e6:.1f} days; DuckDB {duckdb.__version__}; median of {a.runs} runs")
        print("histogram: " + "; ".join(f"{n} buckets from {src}, {k} files scanned" for n, (src, k) in sorted(sources.items())))
        width = max(len(q[0]) for q in questions)
        print(f"{'question':<{width}} {'wiretrail':>10} {'DuckDB':>10} {'DuckDB/ours':>12} {'target':>8}")
        for name, w, d, target in questions:
            tw, td = timed(w, a.runs), timed(d, a.runs)
            t = f"{target} ms" if target else "—"
            print(f"{name:<{width}} {tw:>8.1f}ms {td:>8.1f}ms {td / tw:>11.2f}x {t:>8}", flush=True)
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
