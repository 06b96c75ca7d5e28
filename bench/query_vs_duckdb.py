#!/usr/bin/env python3
"""Window-query latency: wiretrail's REST API next to DuckDB on the same Parquet files.

    python3 bench/query_vs_duckdb.py [PCAP…]

Imports the captures (default: cluster_mix.pcap, replicated --copies times with shifted node
names) into a fresh data dir with the release binary, starts `wiretrail up` on it, then times
the same questions both ways (median of --runs): a count of HTTP entries in a 1-minute window
and the newest 50 entries matching a header regex. DuckDB is installed with pip if missing.
"""
import argparse, json, os, shutil, socket, statistics, subprocess, sys, tempfile, time, urllib.parse, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR") or subprocess.run(
    [os.path.join(ROOT, "dev.sh"), "target-dir"], capture_output=True, text=True, check=True).stdout.strip(),
    "release", "wiretrail")
CORPUS = os.path.join(ROOT, "..", "shared", "corpus", "pcaps")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def get(url):
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


def timed(fn, runs):
    out = []
    for _ in range(runs):
        t = time.perf_counter(); fn(); out.append(time.perf_counter() - t)
    return statistics.median(out) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pcaps", nargs="*")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--copies", type=int, default=8)
    a = ap.parse_args()
    try:
        import duckdb
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "duckdb"], check=True)
        import duckdb
    pcaps = a.pcaps or [os.path.join(CORPUS, "cluster_mix.pcap")]
    work = tempfile.mkdtemp(prefix="wt-qbench-")
    data = os.path.join(work, "data")
    try:
        for i in range(a.copies):
            subprocess.run([BIN, "import", "--data", data, "--node", f"node-{i}", "--format", "json",
                            "--identities", os.path.join(CORPUS, "cluster_mix.identities.json"), *pcaps],
                           check=True, stdout=subprocess.DEVNULL)
        http, flight = free_port(), free_port()
        up = subprocess.Popen([BIN, "up", "--data", data, "--listen", f"127.0.0.1:{http}",
                               "--flight-listen", f"127.0.0.1:{flight}",
                               "--flight-sql-listen", f"127.0.0.1:{free_port()}", "--no-capture"], stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{http}"
            for _ in range(200):
                try:
                    urllib.request.urlopen(base + "/healthz", timeout=1); break
                except Exception:
                    time.sleep(0.1)
            newest = get(base + "/api/v1/entries?limit=1")["entries"][0]["ts_us"]
            t_to = newest - 5_000_000
            t_from = t_to - 60_000_000
            files = os.path.join(data, "entries", "*", "*", "*.parquet")
            con = duckdb.connect()
            con.execute(f"create view entries as select * from read_parquet('{files}', hive_partitioning=true)")
            w_sql = f"ts >= make_timestamp({t_from}) and ts < make_timestamp({t_to})"

            def wt_count():
                q = urllib.parse.urlencode({"kfl": "http", "from": t_from // 1000, "to": t_to // 1000, "limit": 10000})
                return len(get(f"{base}/api/v1/entries?{q}")["entries"])

            def dd_count():
                return len(con.execute(f"select id, ts, protocol, method, path, status, elapsed_us, src_name, dst_name from entries where protocol = 'http' and {w_sql} order by ts desc, id desc limit 10000").fetchall())

            def wt_page():
                q = urllib.parse.urlencode({"kfl": 'request.headers["Authorization"] == r"Token.*"', "limit": 50})
                return len(get(f"{base}/api/v1/entries?{q}")["entries"])

            def dd_page():
                return len(con.execute("select id from entries where regexp_matches(map_extract(request_headers, 'Authorization')[1], 'Token.*') order by ts desc, id desc limit 50").fetchall())

            assert wt_count() == dd_count(), (wt_count(), dd_count())
            assert wt_page() == dd_page(), (wt_page(), dd_page())
            rows = con.execute("select count(*) from entries").fetchone()[0]
            print(f"store: {rows} entries, {a.copies} imports of {len(pcaps)} capture(s); median of {a.runs} runs")
            print(f"{'question':<44} {'wiretrail':>10} {'duckdb':>10} {'ratio':>7}")
            for name, w, d in [("1-min window, every HTTP row (list columns)", wt_count, dd_count),
                               ("newest 50 with Authorization ~ Token.*", wt_page, dd_page)]:
                tw, td = timed(w, a.runs), timed(d, a.runs)
                print(f"{name:<44} {tw:>8.1f}ms {td:>8.1f}ms {td / tw:>6.2f}x")
        finally:
            up.terminate(); up.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
