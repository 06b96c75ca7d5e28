#!/usr/bin/env python3
"""Time to the first rows on screen: the dashboard on the 24M-entry bench store, in a real browser.

    python3 bench/ui_first_rows.py [--store DIR] [--runs 5] [--ui-dir DIR]

Serves the store of bench/query_vs_duckdb.py (built by that script when missing) with
`wiretrail up` and drives Debian's Chromium (/usr/bin/chromium) with Playwright for Python. Each
page load is cold on the browser's side: a new browser context (empty cache, no storage) per
load. Measured in the page, from navigation start (performance.timeOrigin): the first animation
frame in which a row of the `Entries` grid (role `row` with `data-id`, ui/README.md) is in the
viewport. Two views:

  default   /                                               the window is where the data is
  token     /?kfl=<token query>&from=<3 days ago>&to=<now>  request.headers["Authorization"] == r"Token.*"

The first load after the server starts (its caches empty) is reported on its own; the median,
min and max are over the --runs loads after it. The API requests the page made are read from
the browser's resource timing (start and duration, from navigation start), so the table shows
which request the first rows wait for.
"""
import argparse, datetime, os, shutil, statistics, subprocess, sys, tempfile, time, urllib.parse, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from query_vs_duckdb import KFL, ROOT, TARGET, Server, build_store  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
# The API requests shown in the table (path → column); others are listed below it.
SHOWN = ["/api/v1/entries", "/api/v1/count", "/api/v1/histogram"]

# Runs before any page script: watches every animation frame for the first entry row in view.
PROBE = """
(() => {
  const sel = '[role="row"][data-id]';
  const inView = (el) => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && r.bottom > 0 && r.top < innerHeight;
  };
  const tick = (t) => {
    const row = [...document.querySelectorAll(sel)].find(inView);
    if (row) {
      window.__firstRow = { frame: t, now: performance.now(), id: row.getAttribute('data-id') };
      return;
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})();
"""


def api_timings(page):
    """API requests seen by the page: (path, query, start ms, duration ms, TTFB ms), in start order."""
    out = []
    for r in page.evaluate("""() => performance.getEntriesByType('resource').map(r => ({
            name: r.name, start: r.startTime, dur: r.duration, ttfb: r.responseStart - r.startTime}))"""):
        u = urllib.parse.urlsplit(r["name"])
        if u.path.startswith("/api/"):
            out.append((u.path, u.query, r["start"], r["dur"], r["ttfb"]))
    return sorted(out, key=lambda x: x[2])


PlaywrightTimeout = Exception


def load(browser, url, timeout_s):
    """One cold page load; returns (first row ms, API timings, page errors, failed requests)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.add_init_script(PROBE)
    page = ctx.new_page()
    errors, failed = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("requestfailed", lambda r: failed.append(f"{r.url} {r.failure}"))
    try:
        page.goto(url, wait_until="commit")
        page.wait_for_function("() => window.__firstRow", timeout=timeout_s * 1000, polling=50)
        first = page.evaluate("() => window.__firstRow")
        # The same row through the accessibility contract (untimed): a row of the grid "Entries".
        grid = page.get_by_role("grid", name="Entries").or_(page.get_by_role("table", name="Entries"))
        if not grid.locator(f'[role="row"][data-id="{first["id"]}"]').count():
            raise SystemExit(f"{url}: the first row {first['id']} is not in a grid or table named Entries")
        # Let the requests still running when the rows showed (count, histogram) finish.
        try:
            page.wait_for_load_state("networkidle", timeout=timeout_s * 1000)
        except PlaywrightTimeout:
            errors.append(f"network not idle {timeout_s:.0f} s after navigation")
        return first["frame"], api_timings(page), errors, failed
    finally:
        ctx.close()


def cargo_running():
    return subprocess.run(["pgrep", "-x", "cargo"], capture_output=True).returncode == 0


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="/var/tmp/wiretrail-bench-24m", help="data dir (bench/query_vs_duckdb.py's)")
    ap.add_argument("--entries", type=int, default=24_000_000, help="when the store has to be built")
    ap.add_argument("--days", type=float, default=3, help="when the store has to be built")
    ap.add_argument("--runs", type=int, default=5, help="cold page loads per view after the first")
    ap.add_argument("--ui-dir", help="serve the dashboard from this directory (wiretrail up --ui-dir)")
    ap.add_argument("--timeout", type=float, default=60, help="seconds a page may take to show rows")
    a = ap.parse_args()
    global PlaywrightTimeout
    from playwright.sync_api import TimeoutError as PlaywrightTimeout, sync_playwright

    work = tempfile.mkdtemp(prefix="wt-uibench-")
    try:
        for b in ("wiretrail", "examples/ingest_bench"):
            shutil.copy(os.path.join(TARGET, "release", b), work)
        binary = os.path.join(work, "wiretrail")
        if not os.path.exists(os.path.join(a.store, "index")):
            build_store(work, a.store, a.entries, a.days)
        load_before = open("/proc/loadavg").read().split()[:3]
        cargo_before = cargo_running()
        srv = Server(binary, a.store, *(["--ui-dir", a.ui_dir] if a.ui_dir else []))
        try:
            with urllib.request.urlopen(srv.base + "/", timeout=10) as r:
                html = r.read().decode(errors="replace")
            if "dashboard is not available" in html or "<script" not in html:
                raise SystemExit("wiretrail up does not serve the dashboard at / (build ui/dist or pass --ui-dir)")
            now = time.time()
            views = [
                ("default view  /", "/"),
                ("token query, 3 days", "/?" + urllib.parse.urlencode(
                    {"kfl": KFL, "from": rfc3339(now - 3 * 86400), "to": rfc3339(now)})),
            ]
            results = {}
            cargo_during = False
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
                try:
                    for name, path in views:
                        loads = []
                        for _ in range(a.runs + 1):
                            loads.append(load(browser, srv.base + path, a.timeout))
                            cargo_during |= cargo_running()
                        results[name] = (path, loads)
                finally:
                    browser.close()
        finally:
            srv.stop()
        report(a, results, load_before, cargo_before, cargo_during)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(a, results, load_before, cargo_before, cargo_during):
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    if subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD"]).returncode:
        commit += " (dirty)"
    chromium = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"commit {commit}; load before: {load_before}; {chromium}; "
          f"cargo running: before {'yes' if cargo_before else 'no'}, during {'yes' if cargo_during else 'no'}")
    print(f"store {a.store}; first load after server start, then median/min/max of {a.runs} cold loads "
          f"(new browser context each); times in ms from navigation start")
    med = lambda xs: statistics.median(xs) if xs else None
    fmt = lambda x: f"{x:,.0f}" if x is not None else "—"
    print(f"{'view':<22} {'first load':>10} {'median':>8} {'min':>6} {'max':>6} {'target':>7}")
    for name, (path, loads) in results.items():
        rest = [l[0] for l in loads[1:]]
        print(f"{name:<22} {fmt(loads[0][0]):>10} {fmt(med(rest)):>8} {fmt(min(rest)):>6} {fmt(max(rest)):>6} {'1,000':>7}")
    print()
    print("API requests seen by the browser (median over the same loads; start → end, duration, time to first byte):")
    print(f"{'view':<22} {'request':<26} {'n/load':>6} {'start':>7} {'end':>7} {'duration':>9} {'TTFB':>7} {'first load':>11}")
    for name, (path, loads) in results.items():
        paths = []
        for l in loads:
            for t in l[1]:
                if t[0] not in paths:
                    paths.append(t[0])
        for p in sorted(paths, key=lambda p: (p not in SHOWN, SHOWN.index(p) if p in SHOWN else 0, p)):
            # The first request of this path in each load (e.g. the first page of entries).
            firsts = [next((t for t in l[1] if t[0] == p), None) for l in loads]
            rest = [t for t in firsts[1:] if t]
            n = med([sum(1 for t in l[1] if t[0] == p) for l in loads[1:]])
            f0 = firsts[0]
            print(f"{name:<22} {p:<26} {n:>6.0f} {fmt(med([t[2] for t in rest])):>7} "
                  f"{fmt(med([t[2] + t[3] for t in rest])):>7} {fmt(med([t[3] for t in rest])):>9} "
                  f"{fmt(med([t[4] for t in rest])):>7} {fmt(f0[3] if f0 else None):>11}")
    for name, (path, loads) in results.items():
        print(f"\n{name}: {path}")
        for t in loads[-1][1]:
            if t[0] in SHOWN:
                print(f"  {t[0]}?{urllib.parse.unquote_plus(t[1])}")
        for i, l in enumerate(loads):
            calls = ", ".join(f"{t[0].rsplit('/', 1)[-1]} {t[2]:.0f}+{t[3]:.0f}" for t in l[1])
            print(f"  load {i}: first row {l[0]:.0f} ms; {calls}")
            for e in l[2] + l[3]:
                print(f"    ! {e}")


if __name__ == "__main__":
    main()
