#!/usr/bin/env python3
"""Real-browser user flows of the wiretrail dashboard (Playwright for Python, Debian's Chromium).

Run by `tests/e2e_ui.rs` against a `wiretrail up` that holds `cluster_mix.pcap` imported with its
identity map (node `node-a`). Every expected number comes from the corpus's ground truth
(`truth/cluster_mix.expected.tsv`, `truth/cluster_mix.servicemap.json`, `truth/*.fields.tsv`,
`pcaps/cluster_mix.phases.tsv`), except where a flow compares the screen with the REST answer
for the same question (`/api/v1/count` after a brush, `POST /api/v1/sql`). Locators use only the
accessibility contract of `ui/README.md` (roles, accessible names, `data-id`, `data-position`).

With --token-viewer/--token-admin/--token-agent (a server started with `up --auth tokens`), the
token flows run instead: the sign-in screen on a deep link, a wrong token (alert, still signed
out), the viewer's token (the deep link's count, SQL and its CSV download, live tail through the
`bearer.<token>` subprotocol, `Create snapshot` refused in place with 403), `Sign out`, and the
admin's snapshot with its bundle downloaded with the token. Only the 401/403 answers a flow
provokes on purpose are allowed in the console and network log.

Each flow is a function; a flow passes when all its checks hold. A failure prints the flow, the
expectation and what was seen. Screenshots of each view go to --out (paths printed). The last line
is `N passed, M failed`; the exit status is non-zero on any failure.
"""

import argparse
import collections
import csv
import datetime as dt
import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
TOKEN_KFL = 'request.headers["Authorization"] == r"Token.*"'
BAD_KFL = "response.status =="
API_POD = "api-6f7b9c4d8-9tq7m"
AUTH_POD = "auth-58c6f9d7b-kw4rz"
FE1_POD = "frontend-7c9d5b8f6-2xkqp"
MISSION_KFL = f'dst.pod == "{API_POD}" or dst.pod == "{AUTH_POD}" or src.pod == "{FE1_POD}"'
SQL = "SELECT protocol, count(*) AS n FROM entries GROUP BY protocol ORDER BY protocol"
WAIT = 20.0  # seconds a screen may take to show an expected state


# ----------------------------------------------------------------------------------------------
# Ground truth, read from the corpus files (never from the API).

def read_tsv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def parse_ts(s):
    """RFC 3339 (any fraction, Z or offset) or epoch ms → epoch µs."""
    s = s.strip()
    if re.fullmatch(r"-?\d+", s):
        return int(s) * 1000
    m = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", s)
    if not m:
        raise ValueError(f"not RFC 3339: {s!r}")
    base = dt.datetime.fromisoformat(m.group(1) + (m.group(3).replace("Z", "+00:00")))
    frac = (m.group(2) or ".0")[1:]
    micros = int((frac + "000000")[:6])
    return int(base.timestamp()) * 1_000_000 + micros


def rfc3339(us):
    t = dt.datetime.fromtimestamp(us // 1_000_000, tz=dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{us % 1_000_000:06d}Z"


class Truth:
    def __init__(self, corpus):
        self.corpus = corpus
        truth = os.path.join(corpus, "truth")
        pcaps = os.path.join(corpus, "pcaps")
        self.phases = {r["phase"]: r for r in read_tsv(os.path.join(pcaps, "cluster_mix.phases.tsv"))}
        self.records = read_tsv(os.path.join(truth, "cluster_mix.expected.tsv"))
        with open(os.path.join(pcaps, "cluster_mix.identities.json")) as f:
            self.ids = json.load(f)
        with open(os.path.join(truth, "cluster_mix.servicemap.json")) as f:
            self.smap = json.load(f)
        self.token = [r for r in self.records if r["auth_scheme"] == "Token"]
        # tshark's requests per protocol (counts.json): what the store holds, one entry each
        # (expected.tsv leaves out the clients' own handshakes: Redis HELLO/CLIENT, Kafka
        # ApiVersions/Metadata).
        with open(os.path.join(truth, "counts.json")) as f:
            cm = next(x for x in json.load(f) if x["pcap"] == "cluster_mix.pcap")
        names = {"http1": "http", "resp": "redis"}
        self.by_protocol = {names.get(k, k): v["requests"] for k, v in cm["detail"]["by_protocol"].items()}
        self.total = cm["requests"]
        # Requests as tshark saw them: (method, uri, authorization), for the curl check.
        self.http_requests = set()
        for r in read_tsv(os.path.join(truth, "cluster_mix.fields.tsv")):
            methods = split(r.get("http.request.method", ""))
            uris = split(r.get("http.request.uri", ""))
            auths = split(r.get("http.authorization", ""))
            for i, m in enumerate(methods):
                a = auths[i] if len(auths) == len(methods) else (auths[0] if auths else "")
                self.http_requests.add((m, uris[i] if i < len(uris) else "", a))
        # Redis error replies per (client → server) edge and phase, as tshark saw them (the
        # client record has none: they answer redis-py's connection handshake, which it
        # leaves out; corpus README: "Redis 7.0 answers 3 of these with ERR").
        self.redis_errors = collections.defaultdict(collections.Counter)
        for r in read_tsv(os.path.join(truth, "cluster_mix.fields.tsv")):
            n = len(split(r.get("resp.error", "")))
            if n and r.get("tcp.srcport") == "6379":
                t = float(r["frame.time_epoch"])
                p = next(k for k, v in self.phases.items()
                         if float(v["start_epoch"]) <= t < float(v["end_epoch"]) or
                         (k == "C" and t >= float(v["start_epoch"])) or (k == "A" and t < float(v["end_epoch"])))
                self.redis_errors[(r["ip.dst"], r["ip.src"])][p] += n
        self.keepalive_uris = set()
        self.keepalive_requests = 0
        for r in read_tsv(os.path.join(truth, "http1_keepalive.fields.tsv")):
            self.keepalive_uris.update(split(r.get("http.request.uri", "")))
            self.keepalive_requests += len(split(r.get("http.request.method", "")))

    def phase_window(self, p):
        return self.phases[p]["start"], self.phases[p]["end"]

    def whole_window(self):
        """The whole capture with a minute of margin either side (RFC 3339)."""
        lo = parse_ts(self.phases["A"]["start"]) - 60_000_000
        hi = parse_ts(self.phases["C"]["end"]) + 60_000_000
        return rfc3339(lo), rfc3339(hi)

    def name(self, ip, level):
        i = self.ids[ip]
        if i["kind"] == "node":
            return f"kubelet@{i['node']}" if level == "workload" else f"node/{i['node']}"
        return f"{i['namespace']}/{i['workload'] if level == 'workload' else i['pod']}"

    def edges_by_phase(self, level):
        """(src, dst, protocol) → counts and errors per phase from the client-side record; errors
        both as the truth file defines them (HTTP ≥ 400) and as the map counts them (HTTP 5xx;
        DNS: rcode other than NOERROR; Redis/Kafka: none in this capture)."""
        out = collections.defaultdict(collections.Counter)
        for r in self.records:
            k = (self.name(r["src_ip"], level), self.name(r["dst_ip"], level), r["protocol"])
            p, st = r["phase"], r["status"]
            if r["protocol"] == "http":
                e4 = st.isdigit() and int(st) >= 400
                e5 = st.isdigit() and int(st) >= 500
            elif r["protocol"] == "dns":
                e4 = e5 = st != "NOERROR"
            else:
                e4 = e5 = False
            out[k]["n" + p] += 1
            out[k]["e4" + p] += int(e4)
            out[k]["e5" + p] += int(e5)
        return out

    def map_errors_by_phase(self, level):
        """Errors per edge and phase as the map counts them: the client record's (HTTP 5xx,
        DNS rcode) plus tshark's Redis error replies."""
        per = self.edges_by_phase(level)
        out = collections.defaultdict(collections.Counter)
        for k, c in per.items():
            for p in "ABC":
                out[k]["n" + p] = c["n" + p]
                out[k]["e" + p] = c["e5" + p]
        for (cli, srv), by in self.redis_errors.items():
            k = (self.name(cli, level), self.name(srv, level), "redis")
            for p, n in by.items():
                out[k]["e" + p] += n
        return out


def split(v):
    return [x for x in v.split("|")] if v else []


def map_errors(t):
    """Errors of a truth edge as the map counts them (HTTP 5xx; others: error_count)."""
    if t["protocol"] == "http":
        return sum(n for s, n in t["status"].items() if s.isdigit() and int(s) >= 500)
    return t["error_count"]


# ----------------------------------------------------------------------------------------------
# A recorder HTTP server for the "Copy as curl" check.

class Recorder:
    def __init__(self):
        self.requests = []
        rec = self

        class H(http.server.BaseHTTPRequestHandler):
            def handle_any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                rec.requests.append({"method": self.command, "path": self.path,
                                     "headers": {k.lower(): v for k, v in self.headers.items()},
                                     "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(b"ok")

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = handle_any

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


# ----------------------------------------------------------------------------------------------
# The harness: checks, flows, browser events.

class Failure(Exception):
    pass


class Harness:
    def __init__(self, args, truth):
        self.args = args
        self.url = args.url.rstrip("/")
        self.truth = truth
        self.failures = []        # (flow, expectation, seen)
        self.flow = None
        self.passed = 0
        self.failed = 0
        self.page = None
        self.console_errors = []  # (flow, text, location)
        self.failed_requests = []  # (flow, method, url, why)
        self.aborted = []         # requests the page aborted itself (net::ERR_ABORTED)
        self.allow_bad_validate = False
        # Refusals a flow provokes on purpose: (status, method or None, path prefix).
        self.allow_refused = []
        self.import_env = dict(os.environ)  # the environment of `wiretrail import` (a token)
        self.shots = []
        self.refused = []         # the deliberate 401/403 answers seen (printed, not counted)
        self.state = {}           # what one flow leaves for the next (entry id, …)

    # --- checks
    def check(self, ok, expectation, seen):
        if not ok:
            self.failures.append((self.flow, expectation, seen))
            print(f"FAIL [{self.flow}] expected: {expectation}\n      seen: {seen}", flush=True)
        return ok

    def require(self, ok, expectation, seen):
        """A check the rest of the flow depends on: stops the flow when it does not hold."""
        if not self.check(ok, expectation, seen):
            raise Failure(expectation)

    def run(self, fn):
        self.flow = fn.__name__.removeprefix("flow_")
        before = len(self.failures)
        print(f"--- {self.flow}", flush=True)
        t0 = time.time()
        try:
            fn(self)
        except Failure:
            pass
        except Exception as e:  # noqa: BLE001 — any error is this flow's failure
            self.failures.append((self.flow, "the flow runs to its end", f"{type(e).__name__}: {e}"))
            print(f"FAIL [{self.flow}] error: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc()
        ok = len(self.failures) == before
        if not ok and self.page is not None and self.flow != "no_errors":
            try:
                self.shot(f"{self.flow}-failed")
            except Exception:  # noqa: BLE001
                pass
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print(f"{'ok  ' if ok else 'FAIL'} {self.flow} ({time.time() - t0:.1f} s)", flush=True)

    def shot(self, name):
        path = os.path.join(self.args.out, f"{name}.png")
        self.page.screenshot(path=path, full_page=True)
        self.shots.append(path)
        print(f"screenshot: {path}", flush=True)

    # --- browser events
    def attach(self, page):
        def on_console(msg):
            if msg.type != "error":
                return
            loc = msg.location.get("url", "") if msg.location else ""
            # Chromium logs "Failed to load resource: … status of 400" for the deliberate bad query.
            if self.allow_bad_validate and "/api/v1/kfl/validate" in loc:
                return
            # "Failed to load resource: the server responded with a status of 401 (Unauthorized)".
            m = re.search(r"status of (\d{3})", msg.text or "")
            if m and self.refusal_allowed(int(m.group(1)), None, loc):
                return
            self.console_errors.append((self.flow, msg.text, loc))
            print(f"console error [{self.flow}]: {msg.text} ({loc})", flush=True)

        def on_pageerror(err):
            self.console_errors.append((self.flow, f"pageerror: {err}", ""))
            print(f"page error [{self.flow}]: {err}", flush=True)

        def on_requestfailed(req):
            why = req.failure or ""
            if "ERR_ABORTED" in why:
                # The page cancelled it (a superseded fetch, a download handed to the browser):
                # not a failure of the server or the network. Printed, not counted.
                self.aborted.append((self.flow, req.method, req.url))
                return
            self.failed_requests.append((self.flow, req.method, req.url, why))
            print(f"request failed [{self.flow}]: {req.method} {req.url}: {why}", flush=True)

        def on_response(resp):
            if resp.status < 400:
                return
            if (self.allow_bad_validate and resp.status == 400
                    and urllib.parse.urlsplit(resp.url).path == "/api/v1/kfl/validate"):
                return
            if self.refusal_allowed(resp.status, resp.request.method, resp.url):
                self.refused.append((self.flow, resp.status, resp.request.method, resp.url))
                return
            self.failed_requests.append((self.flow, resp.request.method, resp.url, f"HTTP {resp.status}"))
            print(f"HTTP {resp.status} [{self.flow}]: {resp.request.method} {resp.url}", flush=True)

        page.on("console", on_console)
        page.on("pageerror", on_pageerror)
        page.on("requestfailed", on_requestfailed)
        page.on("response", on_response)

    def refusal_allowed(self, status, method, url):
        """Is this 401/403 one the current flow provokes on purpose (see allow_refused)?"""
        if not url:
            return False
        path = urllib.parse.urlsplit(url).path
        return any(status == st and (m is None or method is None or m == method) and path.startswith(prefix)
                   for st, m, prefix in self.allow_refused)

    # --- REST (only where a flow compares the screen with the server's answer)
    def api(self, path, query=None, body=None):
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        if self.args.token_viewer:
            headers["Authorization"] = f"Bearer {self.args.token_viewer}"
        req = urllib.request.Request(url, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    # --- the contract's elements
    def link(self, name):
        return self.page.get_by_role("link", name=name, exact=True)

    def textbox(self, name):
        return self.page.get_by_role("textbox", name=name, exact=True)

    def button(self, name):
        return self.page.get_by_role("button", name=name, exact=True)

    def count_el(self):
        return self.page.get_by_label("Matching entries", exact=True).first

    def grid(self):
        p = self.page
        return p.get_by_role("grid", name="Entries", exact=True).or_(
            p.get_by_role("table", name="Entries", exact=True)).first

    def detail(self):
        return self.page.get_by_role("region", name="Entry detail", exact=True)

    def table(self, name):
        return self.page.get_by_role("table", name=name, exact=True).or_(
            self.page.get_by_role("grid", name=name, exact=True)).first

    def histogram(self):
        p = self.page
        return p.get_by_role("figure", name="Volume histogram", exact=True).or_(
            p.get_by_role("img", name="Volume histogram", exact=True)).or_(
            p.get_by_role("region", name="Volume histogram", exact=True)).first

    def kfl_alert(self):
        return self.page.locator("[role=alert][data-position]").first

    # --- reading the screen
    def count_text(self):
        try:
            return self.count_el().inner_text(timeout=2000).strip()
        except Exception as e:  # noqa: BLE001
            return f"<no 'Matching entries' element: {type(e).__name__}>"

    def wait_for(self, probe, want, timeout=WAIT, settle=0.0):
        """Polls probe() until it equals want (or want(value) is true); returns the last value."""
        deadline = time.time() + timeout
        seen = None
        while True:
            try:
                seen = probe()
            except Exception as e:  # noqa: BLE001
                seen = f"<{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}>"
            ok = want(seen) if callable(want) else seen == want
            if ok:
                if settle:
                    self.pause(settle)
                    seen2 = probe()
                    if (want(seen2) if callable(want) else seen2 == want):
                        return seen2
                    seen = seen2
                else:
                    return seen
            if time.time() > deadline:
                return seen
            self.pause(0.1)

    def expect_count(self, want, what, timeout=WAIT):
        seen = self.wait_for(self.count_text, str(want), timeout, settle=0.5)
        return self.check(seen == str(want), f"'Matching entries' = {want} ({what})", seen)

    def rows(self):
        """Entry rows currently in the DOM: (data-id, [cell texts], row text); none without a list."""
        if self.grid().count() == 0:
            return []
        return self.grid().evaluate("""g => Array.from(g.querySelectorAll('[role=row][data-id], tr[data-id]'))
            .map(r => [r.getAttribute('data-id'),
                       Array.from(r.querySelectorAll('[role=gridcell],[role=cell],td,th')).map(c => c.innerText.trim()),
                       r.innerText])""")

    def all_rows(self, limit_s=60.0):
        """Every row of the virtualized list: scrolls its scroll container to the end, collecting
        rows by data-id, until the end stays put and no new row comes."""
        g = self.grid()
        g.wait_for(state="visible", timeout=WAIT * 1000)
        g.evaluate("""g => {
            // The list's scroll container: the grid, else inside it, else around it.
            const scrolls = e => e && e.scrollHeight > e.clientHeight + 1 &&
                /(auto|scroll)/.test(getComputedStyle(e).overflowY);
            let el = scrolls(g) ? g : Array.from(g.querySelectorAll('*')).find(scrolls);
            if (!el) { el = g.parentElement; while (el && !scrolls(el)) el = el.parentElement; }
            if (!el) el = g;
            window.__wtScroller = el;
            el.scrollTop = 0;
        }""")
        self.pause(0.3)
        seen = collections.OrderedDict()
        deadline = time.time() + limit_s
        idle = 0
        while time.time() < deadline:
            before = len(seen)
            for rid, cells, text in self.rows():
                seen.setdefault(rid, (cells, text))
            moved = g.evaluate("""() => { const el = window.__wtScroller;
                const t = el.scrollTop; el.scrollTop = t + Math.max(40, el.clientHeight * 0.7);
                return el.scrollTop !== t; }""")
            self.pause(0.15)
            if not moved and len(seen) == before:
                idle += 1
                if idle >= 8:  # ~2 s at the end without a new row (infinite scroll had its chance)
                    break
                self.pause(0.1)
            else:
                idle = 0
        g.evaluate("() => { window.__wtScroller.scrollTop = 0; }")
        return seen

    def read_table(self, loc):
        """A table's column names and rows (cell texts), header rows excluded."""
        return loc.evaluate(r"""t => {
            // What a cell shows: its text with CSS-generated text (e.g. a delta after a number).
            const pseudo = (el, p) => {
                let c = getComputedStyle(el, p).content;
                if (!c || c === 'none' || c === 'normal') return '';
                c = c.replace(/attr\(([^)]+)\)/g, (_, a) => JSON.stringify(el.getAttribute(a.trim()) || ''));
                return Array.from(c.matchAll(/"((?:[^"\\]|\\.)*)"/g)).map(m => m[1]).join('');
            };
            const txt = c => (pseudo(c, '::before') + c.innerText + pseudo(c, '::after')).trim();
            const cellsOf = r => Array.from(r.querySelectorAll('[role=gridcell],[role=cell],[role=columnheader],[role=rowheader],td,th'));
            const rows = Array.from(t.querySelectorAll('[role=row], tr'));
            let header = [];
            const body = [];
            for (const r of rows) {
                const cells = cellsOf(r);
                const isHeader = cells.length && cells.every(c => c.getAttribute('role') === 'columnheader' ||
                    (c.tagName === 'TH' && !c.getAttribute('role') && r.closest('thead')));
                if (isHeader || (r.closest('thead') && !header.length)) {
                    if (!header.length) header = cells.map(c => c.innerText.trim());
                } else {
                    body.push({cells: cells.map(txt), id: r.getAttribute('data-id')});
                }
            }
            if (!header.length) header = Array.from(t.querySelectorAll('[role=columnheader], th')).map(c => c.innerText.trim());
            return {header, rows: body};
        }""")

    def col(self, table, name):
        """Index of the column whose name starts with `name` (sort arrows may follow it)."""
        for i, h in enumerate(table["header"]):
            if h == name or re.match(re.escape(name) + r"\b", h):
                return i
        raise Failure(f"column {name!r} in {table['header']}")

    def location(self):
        """The page's URL as the page has it now (page.url follows events, read lazily)."""
        return self.page.evaluate("location.href")

    def query_params(self):
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.location()).query))

    def pause(self, seconds):
        """Sleeps while Playwright keeps delivering the page's events (console, sockets, …)."""
        self.page.wait_for_timeout(seconds * 1000)

    # --- actions
    def goto_view(self, name):
        self.link(name).click()
        self.page.wait_for_load_state("domcontentloaded")

    def apply_kfl(self, q):
        box = self.textbox("KFL filter")
        box.fill(q)
        box.press("Enter")

    def apply_window(self, frm, to):
        """Each input applied with its own Enter; the order keeps from < to at every step."""
        cur_to = self.query_params().get("to")
        order = [("From", frm), ("To", to)]
        try:
            if cur_to and parse_ts(frm) >= parse_ts(cur_to):
                order.reverse()
        except ValueError:
            pass
        for name, value in order:
            box = self.textbox(name)
            box.fill(value)
            box.press("Enter")
            self.pause(0.2)


def header(entry, side, name):
    """A header of an entry from REST (`[{name, value}]`)."""
    return next((x.get("value") for x in entry.get(side) or [] if x.get("name", "").lower() == name), None)


def name_match(cell, truth_name):
    """Does a Source/Target cell name this truth endpoint? The truth writes `ns/workload`,
    `ns/pod`, `kubelet@node` (workload level) or `node/node` (pod level); the cell must hold
    the workload, pod or node as a whole word (a namespace, if shown, must be the truth's)."""
    cell = cell.strip()
    if cell == truth_name:
        return True
    words = set(re.split(r"[\s/()·,@:]+", cell))
    if truth_name.startswith("node/"):
        return truth_name[5:] in words
    if truth_name.startswith("kubelet@"):
        return "kubelet" in words and truth_name[8:] in words
    ns, name = truth_name.split("/", 1)
    namespaces = {"shop", "infra"}
    shown_ns = words & namespaces
    return name in words and (not shown_ns or shown_ns == {ns})


def digits(s):
    m = re.search(r"-?\d+", s or "")
    return int(m.group()) if m else None


def numbers(s):
    return [int(x) for x in re.findall(r"[-+]?\d+", (s or "").replace(",", "").replace("\u2212", "-"))]


# ----------------------------------------------------------------------------------------------
# Flows.

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
UNITS = r"(B|KB|KiB|MB|MiB|ms|µs|us|s)"


def tokens(cells):
    return {t for c in cells for t in re.split(r"[\s\u2192]+", c.strip()) if t}


def status_of(cells, status_col):
    """The status a row shows: its Status column when the grid names one, else the one cell
    that reads like an HTTP status (three digits, maybe a reason phrase; not a size or time)."""
    if status_col is not None and status_col < len(cells):
        m = re.match(r"\s*(\d{3})\b", cells[status_col])
        return m.group(1) if m else None
    hits = [c.strip()[:3] for c in cells
            if re.fullmatch(rf"[1-5]\d\d(\s+(?!{UNITS}$)[A-Za-z][\w' -]*)?", c.strip())]
    return hits[0] if len(hits) == 1 else None


def grid_status_col(h):
    try:
        header = h.read_table(h.grid())["header"]
    except Exception:  # noqa: BLE001
        return None
    return next((i for i, c in enumerate(header) if re.match(r"status", c, re.I)), None)


def token_rows_match(h, rows, records):
    """Rows against client-record requests: (method, target, status) multisets."""
    want = collections.Counter((r["method"], r["target"], r["status"]) for r in records)
    got = collections.Counter()
    unmatched = []
    targets = {t for _, t, _ in want}
    sc = grid_status_col(h)
    for rid, (cells, text) in rows.items():
        toks = tokens(cells)
        target = next((t for t in targets if t in toks), None)
        method = next((m for m in METHODS if m in toks), None)
        status = status_of(cells, sc)
        if target is None or method is None or status is None:
            unmatched.append((rid, cells))
            continue
        got[(method, target, status)] += 1
    return want, got, unmatched


def flow_token_query(h):
    p = h.page
    p.goto(h.url + "/")
    h.textbox("KFL filter").wait_for(timeout=WAIT * 1000)
    want_all = len(h.truth.token)
    h.check(want_all == 112, "the client record holds 112 Token requests", want_all)
    h.apply_kfl(TOKEN_KFL)
    h.expect_count(want_all, "Token requests of the whole capture, default window")
    h.check(h.query_params().get("kfl") == TOKEN_KFL, f"URL kfl = {TOKEN_KFL!r}", h.location())
    rows = h.all_rows()
    print(f"token query: {h.count_text()} matching, {len(rows)} rows after scrolling", flush=True)
    h.check(len(rows) == want_all, f"{want_all} rows in 'Entries' (scrolled to the end)", len(rows))
    want, got, unmatched = token_rows_match(h, rows, h.truth.token)
    h.check(not unmatched, "every row shows method, path and status of a Token request",
            unmatched[:3])
    h.check(got == want, "rows' (method, path, status) equal the client record's Token requests",
            {"missing": dict(want - got), "extra": dict(got - want)})
    h.shot("traffic-token")

    # Phase C.
    c_from, c_to = h.truth.phase_window("C")
    want_c = sum(1 for r in h.truth.token if r["phase"] == "C")
    h.check(want_c == 104, "the client record holds 104 Token requests in phase C", want_c)
    h.apply_window(c_from, c_to)
    h.expect_count(want_c, f"Token requests of phase C [{c_from}, {c_to})")
    q = h.query_params()
    h.check(q.get("from") and parse_ts(q["from"]) == parse_ts(c_from) and
            q.get("to") and parse_ts(q["to"]) == parse_ts(c_to),
            f"URL from/to = phase C ({c_from}, {c_to})", h.location())
    rows = h.all_rows()
    h.check(len(rows) == want_c, f"{want_c} rows in phase C", len(rows))
    truth_c = [r for r in h.truth.token if r["phase"] == "C"]
    want, got, unmatched = token_rows_match(h, rows, truth_c)
    h.check(got == want and not unmatched, "phase C rows equal the client record's phase C Token requests",
            {"missing": dict(want - got), "extra": dict(got - want), "unmatched": unmatched[:3]})

    # Open the first row: the detail pane.
    first = h.grid().locator("[role=row][data-id], tr[data-id]").first
    rid = first.get_attribute("data-id")
    first.click()
    d = h.detail()
    h.require(h.wait_for(d.is_visible, True), "region 'Entry detail' opens on a row click", "not visible")
    st, entry = h.api(f"/api/v1/entries/{urllib.parse.quote(rid)}")
    h.require(st == 200, f"the row's data-id {rid} is an entry id", f"HTTP {st}: {entry}")
    h.state["entry"] = entry
    h.state["entry_id"] = rid
    h.check(h.query_params().get("entry") == rid, f"URL entry = {rid}", h.location())
    auth = header(entry, "request_headers", "authorization")
    h.check(auth is not None and auth.startswith("Token "), "the entry carries 'Authorization: Token …'", auth)
    h.check((entry["method"], entry["path"], auth) in h.truth.http_requests,
            "the entry's method, path and Authorization are a request tshark saw", (entry["method"], entry["path"], auth))
    d.get_by_role("tab", name="Request", exact=True).click()
    hdrs = h.table("Request headers")
    seen = h.wait_for(lambda: h.read_table(hdrs)["rows"],
                      lambda rows: any(len(r["cells"]) >= 2 and r["cells"][0].lower() == "authorization"
                                       and auth and auth in " ".join(r["cells"][1:]) for r in rows))
    h.check(isinstance(seen, list) and any(len(r["cells"]) >= 2 and r["cells"][0].lower() == "authorization"
                                           and auth and auth in " ".join(r["cells"][1:]) for r in seen),
            f"'Request headers' shows Authorization: {auth}", seen)
    h.shot("traffic-detail-request")
    d.get_by_role("tab", name="Response", exact=True).click()
    status = str(entry["status"])
    statuses = {r["status"] for r in truth_c if r["method"] == entry["method"] and r["target"] == entry["path"]}
    h.check(status in statuses, f"the entry's status is one the client record has for {entry['path']}",
            (status, statuses))
    panel = d.get_by_role("tabpanel")
    seen = h.wait_for(lambda: panel.inner_text(timeout=1000), lambda t: re.match(rf"\s*{status}\b", t) is not None)
    h.check(re.match(rf"\s*{status}\b", seen or "") is not None,
            f"the Response tab of 'Entry detail' starts with status {status}", (seen or "")[:300])
    h.shot("traffic-detail-response")

    # Copy as curl → run it against a local recorder.
    d.get_by_role("button", name="Copy as curl", exact=True).click()
    copied = h.wait_for(lambda: p.get_by_role("status").filter(has_text="Copied").count(), lambda n: n >= 1)
    h.check(copied and copied >= 1, "a 'status' says Copied", copied)
    cmd = p.evaluate("navigator.clipboard.readText()")
    print(f"clipboard: {cmd}", flush=True)
    h.require(cmd.lstrip().startswith("curl"), "the clipboard holds a curl command", cmd[:200])
    m = re.search(r"https?://[^\s'\"/]+", cmd)
    h.require(m is not None, "the curl command has an http URL", cmd[:200])
    rec = Recorder()
    try:
        local = cmd.replace(m.group(0), f"http://127.0.0.1:{rec.port}", 1)
        if not local.startswith("curl "):
            local = local.lstrip()
        local = local.rstrip() + " --max-time 10 -sS -o /dev/null"
        r = subprocess.run(["bash", "-c", local], capture_output=True, text=True, timeout=30)
        h.check(r.returncode == 0, "curl exits 0 against the recorder", f"{r.returncode}: {r.stderr[:300]}")
        h.require(len(rec.requests) == 1, "the recorder got one request", rec.requests)
        got = rec.requests[0]
        h.check(got["method"] == entry["method"], f"method {entry['method']}", got["method"])
        h.check(got["path"] == entry["path"], f"path {entry['path']}", got["path"])
        h.check(got["headers"].get("authorization") == auth, f"Authorization: {auth}",
                got["headers"].get("authorization"))
    finally:
        rec.close()
    h.state["count_before_bad"] = h.count_text()


def flow_bad_kfl(h):
    p = h.page
    if "entry_id" not in h.state:
        # The token flow did not get this far: the same screen from its URL.
        c_from, c_to = h.truth.phase_window("C")
        p.goto(h.url + "/?" + urllib.parse.urlencode({"kfl": TOKEN_KFL, "from": c_from, "to": c_to}))
    want_c = sum(1 for r in h.truth.token if r["phase"] == "C")
    h.expect_count(want_c, "before the bad query: Token requests of phase C")
    before_rows = [r[0] for r in h.rows()][:10]
    st, v = h.api("/api/v1/kfl/validate", {"q": BAD_KFL})
    server_pos = (v or {}).get("error", {}).get("position")
    h.check(st == 400, "validate answers 400 for the bad query", st)
    h.check(server_pos == len(BAD_KFL), f"validate's position = {len(BAD_KFL)} (end of {BAD_KFL!r})", server_pos)
    h.allow_bad_validate = True
    try:
        h.apply_kfl(BAD_KFL)
        alert = h.kfl_alert()
        pos = h.wait_for(lambda: alert.get_attribute("data-position", timeout=1000), lambda x: x is not None)
        h.check(pos == str(len(BAD_KFL)), f"alert data-position = {len(BAD_KFL)} (end of the query; server says {server_pos})", pos)
        try:
            msg = alert.inner_text(timeout=2000)
        except Exception as e:  # noqa: BLE001
            msg = f"<{e}>"
        h.check(bool(msg.strip()), "the alert carries a message", msg)
        h.pause(1.0)  # whatever the page would reload after Enter has had time to happen
        h.check(h.count_text() == str(want_c), f"'Matching entries' stays {want_c}", h.count_text())
        after_rows = [r[0] for r in h.rows()][:10]
        h.check(after_rows == before_rows and len(before_rows) > 0, "the rows stay", (before_rows[:3], after_rows[:3]))
        h.shot("traffic-bad-kfl")
        # Back to a good query: the alert goes away.
        h.apply_kfl(TOKEN_KFL)
        gone = h.wait_for(lambda: h.page.locator("[role=alert][data-position]").count(), 0)
        h.check(gone == 0, "the alert goes away with a valid query", gone)
    finally:
        h.expect_count(want_c, "after fixing the query")
        h.allow_bad_validate = False


def flow_histogram_brush(h):
    p = h.page
    w_from, w_to = h.truth.whole_window()
    p.goto(h.url + "/?" + urllib.parse.urlencode({"from": w_from, "to": w_to}))
    total = h.truth.total
    h.check(total == sum(h.truth.by_protocol.values()), "counts.json: requests = sum over protocols",
            (total, h.truth.by_protocol))
    h.expect_count(total, "every entry of the capture (tshark's requests, counts.json)")
    # Zoom to where the data is (phase A start → phase C end), so a brush over the middle of the
    # chart selects part of the traffic.
    a_from, _ = h.truth.phase_window("A")
    _, c_to = h.truth.phase_window("C")
    h.apply_window(a_from, c_to)
    h.wait_for(lambda: h.query_params().get("from"), a_from)
    before = h.wait_for(h.count_text, lambda t: t.isdigit() and int(t) > 0, settle=0.5)
    hist = h.histogram()
    hist.wait_for(state="visible", timeout=WAIT * 1000)
    h.pause(1.0)  # the chart draws after its data arrives
    q0 = h.query_params()
    f0, t0 = parse_ts(q0.get("from", w_from)), parse_ts(q0.get("to", w_to))
    box = hist.bounding_box()
    h.require(box and box["width"] > 100, "'Volume histogram' has a width to drag over", box)
    y = box["y"] + box["height"] * 0.5
    x1, x2 = box["x"] + box["width"] * 0.30, box["x"] + box["width"] * 0.70
    p.mouse.move(x1, y)
    p.mouse.down()
    p.mouse.move(x2, y, steps=12)
    p.mouse.up()
    url_changed = h.wait_for(lambda: (h.query_params().get("from"), h.query_params().get("to")),
                             lambda ft: ft != (q0.get("from"), q0.get("to")))
    q = h.query_params()
    h.require("from" in q and "to" in q and (q["from"], q["to"]) != (q0.get("from"), q0.get("to")),
              "the brush changes the URL's from/to", (h.location(), url_changed))
    f1, t1 = parse_ts(q["from"]), parse_ts(q["to"])
    print(f"brush: [{q0.get('from')}, {q0.get('to')}) → [{q['from']}, {q['to']})", flush=True)
    h.check(f0 <= f1 < t1 <= t0, "the new window lies inside the old one", (rfc3339(f1), rfc3339(t1)))
    h.check((t1 - f1) <= 0.6 * (t0 - f0), "the new window is ~40 % of the old (≤ 60 %)",
            f"{(t1 - f1) / (t0 - f0):.0%}")
    st, c = h.api("/api/v1/count", {"kfl": q.get("kfl", ""), "from": q["from"], "to": q["to"],
                                    **({"nodes": q["nodes"]} if q.get("nodes") else {})})
    h.require(st == 200, "/api/v1/count answers", (st, c))
    want = c["count"]
    h.check(0 < want < int(before if before.isdigit() else total),
            "the brushed window holds some but not all entries of the window before", (want, before))
    h.expect_count(want, f"/api/v1/count for [{q['from']}, {q['to']})")
    # The list narrowed: its first and last rows lie in the new window.
    rows = h.all_rows(limit_s=30)
    h.check(len(rows) == want, f"{want} rows in the list", len(rows))
    for rid in [next(iter(rows), None), next(reversed(rows), None)]:
        if rid is None:
            continue
        st, e = h.api(f"/api/v1/entries/{urllib.parse.quote(rid)}")
        h.check(st == 200 and f1 <= e["ts_us"] < t1, f"row {rid} lies in the brushed window",
                e.get("ts") if isinstance(e, dict) else e)
    h.shot("traffic-brushed")


def flow_service_map(h):
    p = h.page
    w_from, w_to = h.truth.whole_window()
    p.goto(h.url + "/?" + urllib.parse.urlencode({"from": w_from, "to": w_to}))
    h.goto_view("Service map")
    p.get_by_role("combobox", name="Group by", exact=True).select_option("pod")
    h.apply_kfl(MISSION_KFL)
    q = h.query_params()
    h.check(q.get("group_by") == "pod", "URL group_by = pod", h.location())

    pod_of = lambda s: s.rsplit("/", 1)[-1]  # noqa: E731
    scope = lambda t: (pod_of(t["dst"]) in (API_POD, AUTH_POD) or pod_of(t["src"]) == FE1_POD)  # noqa: E731
    want = [t for t in h.truth.smap["pod_edges"] if scope(t) and t["protocol"] in ("http", "dns")]
    h.check(len(want) == 7, "the truth has 7 HTTP/DNS pod edges in the mission's scope", len(want))

    def match(table):
        si, ti, pi = h.col(table, "Source"), h.col(table, "Target"), h.col(table, "Protocol")
        ci, ei = h.col(table, "Count"), h.col(table, "Errors")
        found, problems = {}, []
        for t in want:
            hits = [r for r in table["rows"]
                    if name_match(r["cells"][si], t["src"]) and name_match(r["cells"][ti], t["dst"])
                    and r["cells"][pi].strip().lower() == t["protocol"]]
            key = (t["src"], t["dst"], t["protocol"])
            if len(hits) != 1:
                problems.append((key, f"{len(hits)} rows"))
                continue
            c = hits[0]["cells"]
            if digits(c[ci]) != t["count"] or digits(c[ei]) != map_errors(t):
                problems.append((key, f"count {c[ci]!r} errors {c[ei]!r}, truth {t['count']}/{map_errors(t)}"))
            found[key] = hits[0]
        return found, problems

    edges = h.table("Edges")
    edges.wait_for(state="visible", timeout=WAIT * 1000)
    table = h.wait_for(lambda: h.read_table(edges), lambda tb: not match(tb)[1])
    h.require(isinstance(table, dict), "the 'Edges' table can be read", table)
    found, problems = match(table)
    print(f"edges table: {len(table['rows'])} rows, {len(found)} matched to the truth's pod edges", flush=True)
    h.check(not problems, "the 'Edges' table's HTTP/DNS rows equal the truth's pod edges (count, 5xx/DNS errors)",
            {"problems": problems, "rows": [r["cells"] for r in table["rows"]]})
    # Nothing outside the scope: every row has api/auth as target or frontend-1 as source.
    si, ti = h.col(table, "Source"), h.col(table, "Target")
    outside = [r["cells"] for r in table["rows"]
               if not (API_POD in r["cells"][ti] or AUTH_POD in r["cells"][ti] or FE1_POD in r["cells"][si])]
    h.check(not outside, "no edge outside the KFL's scope", outside)
    h.shot("map-pods")

    # Click an edge → Traffic filtered to exactly it.
    key = (f"shop/{FE1_POD}", f"shop/{API_POD}", "http")
    t = next(t for t in want if (t["src"], t["dst"], t["protocol"]) == key)
    row = found.get(key)
    h.require(row is not None, f"a row for {key}", None)
    edges.locator("[role=row], tr").filter(has_text=FE1_POD).filter(has_text=API_POD).first.click()
    path = h.wait_for(lambda: urllib.parse.urlsplit(h.location()).path, lambda s: s in ("/", "/traffic"))
    h.check(path in ("/", "/traffic"), "clicking an edge opens the Traffic view", h.location())
    h.expect_count(t["count"], f"entries of the edge {key}")
    h.shot("traffic-from-edge")


def flow_map_compare(h):
    p = h.page
    a_from, a_to = h.truth.phase_window("A")
    b_from, b_to = h.truth.phase_window("B")
    # The current window is phase B (after); the compare window is phase A (before).
    p.goto(h.url + "/map?" + urllib.parse.urlencode({"from": b_from, "to": b_to, "group_by": "workload"}))
    h.textbox("KFL filter").wait_for(timeout=WAIT * 1000)
    h.button("Compare").click()
    cf, ct = h.textbox("Compare from"), h.textbox("Compare to")
    cf.fill(a_from)
    ct.fill(a_to)
    ct.press("Enter")
    q = h.query_params()
    h.check(q.get("cfrom") and parse_ts(q["cfrom"]) == parse_ts(a_from), "URL cfrom = phase A start", h.location())

    per = h.truth.edges_by_phase("workload")
    # My join of the client record reproduces the truth file's per-phase figures (HTTP ≥ 400).
    for t in h.truth.smap["edges"]:
        k = (t["src"], t["dst"], t["protocol"])
        for ph in "ABC":
            if per[k]["n" + ph] != t["by_phase"].get(ph, 0) or per[k]["e4" + ph] != t["errors_by_phase"].get(ph, 0):
                h.check(False, f"client record per phase = servicemap.json for {k} {ph}",
                        (per[k], t["by_phase"], t["errors_by_phase"]))
    # Edges whose error count (as the map counts errors) differs between A and B:
    errs = h.truth.map_errors_by_phase("workload")
    diff = {k: (c["eA"], c["eB"]) for k, c in errs.items()
            if (c["nA"] or c["nB"]) and c["eA"] != c["eB"]}
    same = {k: c["eB"] for k, c in errs.items() if c["nA"] and c["nB"] and c["eA"] == c["eB"]}
    print(f"truth: error counts A→B differ on {diff}", flush=True)

    edges = h.table("Edges")

    def check_table(table):
        probs = []
        si, ti, pi = h.col(table, "Source"), h.col(table, "Target"), h.col(table, "Protocol")
        ei, chi = h.col(table, "Errors"), h.col(table, "Change")
        def row(k):
            hits = [r["cells"] for r in table["rows"] if name_match(r["cells"][si], k[0])
                    and name_match(r["cells"][ti], k[1]) and r["cells"][pi].strip().lower() == k[2]]
            return hits[0] if len(hits) == 1 else None

        for k, (ea, eb) in diff.items():
            c = row(k)
            if c is None:
                probs.append((k, "no row"))
                continue
            if c[chi].strip().lower() not in ("changed", "added", "removed"):
                probs.append((k, f"Change {c[chi]!r}"))
            nums = numbers(c[ei])
            if eb not in nums or not (ea in nums or (eb - ea) in nums):
                probs.append((k, f"Errors {c[ei]!r}: truth A {ea} → B {eb}"))
        # HTTP/DNS counts (the client record holds every one): B's count and its change from A.
        ci = h.col(table, "Count")
        for k, c in errs.items():
            if k[2] not in ("http", "dns") or not (c["nA"] and c["nB"]):
                continue
            cells = row(k)
            if cells is None:
                probs.append((k, "no row"))
                continue
            nums = numbers(cells[ci])
            if not nums or nums[0] != c["nB"] or (c["nB"] != c["nA"] and (c["nB"] - c["nA"]) not in nums[1:]):
                probs.append((k, f"Count {cells[ci]!r}: truth A {c['nA']} → B {c['nB']}"))
        for k, e in same.items():
            c = row(k)
            if c is None:
                probs.append((k, "no row"))
                continue
            nums = numbers(c[ei])
            if nums and (nums[0] != e or any(n not in (e, 0) for n in nums[1:])):
                probs.append((k, f"Errors {c[ei]!r}: truth A = B = {e}"))
        return probs

    table = h.wait_for(lambda: h.read_table(edges), lambda tb: isinstance(tb, dict) and not check_table(tb))
    h.require(isinstance(table, dict), "the 'Edges' table can be read", table)
    probs = check_table(table)
    print(f"compare: {len(table['rows'])} rows; changes {[r['cells'][-1] for r in table['rows']]}", flush=True)
    h.check(not probs, "rows whose error counts changed A → B are marked and show the truth's counts",
            {"problems": probs, "header": table["header"], "rows": [r["cells"] for r in table["rows"]]})
    h.shot("map-compare")


def flow_snapshot(h):
    p = h.page
    c_from, c_to = h.truth.phase_window("C")
    want_c = sum(1 for r in h.truth.token if r["phase"] == "C")
    p.goto(h.url + "/?" + urllib.parse.urlencode({"kfl": TOKEN_KFL, "from": c_from, "to": c_to}))
    h.expect_count(want_c, "the view the snapshot is made from")
    h.goto_view("Snapshots")
    name = f"ui-e2e-{os.getpid()}"
    h.textbox("Snapshot name").fill(name)
    h.button("Create snapshot").click()
    snaps = h.table("Snapshots")
    row = snaps.locator("[role=row], tr").filter(has_text=name)
    h.require(h.wait_for(lambda: row.count(), 1) == 1, f"a row {name} in 'Snapshots'", row.count())
    h.shot("snapshots")
    with p.expect_download(timeout=60_000) as dl:
        row.get_by_role("link", name="Download bundle", exact=True).click()
    download = dl.value
    out = os.path.join(h.args.out, f"bundle-{name}")
    os.makedirs(out, exist_ok=True)
    saved = os.path.join(out, download.suggested_filename or "bundle.tar")
    download.save_as(saved)
    print(f"bundle: {saved} ({os.path.getsize(saved)} bytes)", flush=True)
    bundle = os.path.join(out, "bundle")
    if tarfile.is_tarfile(saved):
        with tarfile.open(saved) as tf:
            try:
                tf.extractall(bundle, filter="data")
            except TypeError:  # Python without extraction filters
                tf.extractall(bundle)
    else:
        h.require(False, "the bundle download is a tar archive", download.suggested_filename)
    r = subprocess.run([h.args.bin, "snapshot", "verify", bundle], capture_output=True, text=True, timeout=120)
    print(r.stdout + r.stderr, flush=True)
    h.check(r.returncode == 0, "wiretrail snapshot verify passes", f"exit {r.returncode}: {r.stderr[-400:]}")
    with open(os.path.join(bundle, "manifest.json")) as f:
        manifest = json.load(f)
    h.check(manifest.get("name") == name, f"manifest name {name}", manifest.get("name"))
    h.check(manifest.get("entries") == want_c, f"the bundle holds the view's {want_c} entries (truth)",
            manifest.get("entries"))
    h.check(manifest.get("kfl") == TOKEN_KFL, "the bundle records the view's KFL", manifest.get("kfl"))


def flow_sql(h):
    p = h.page
    w_from, w_to = h.truth.whole_window()
    p.goto(h.url + "/sql?" + urllib.parse.urlencode({"from": w_from, "to": w_to}))
    box = h.textbox("SQL query")
    box.wait_for(timeout=WAIT * 1000)
    box.fill(SQL)
    h.button("Run").click()
    res = h.table("Results")
    want_truth = sorted(h.truth.by_protocol.items())
    st, v = h.api("/api/v1/sql", body={"sql": SQL})
    h.require(st == 200, "POST /api/v1/sql answers", (st, v))
    rest = [[str(r["protocol"]), str(r["n"])] for r in v["rows"]]
    h.check(rest == [[k, str(n)] for k, n in want_truth], "REST rows equal tshark's requests per protocol (counts.json)",
            (rest, want_truth))
    table = h.wait_for(lambda: h.read_table(res), lambda t: isinstance(t, dict) and len(t["rows"]) == len(rest))
    h.require(isinstance(table, dict), "the 'Results' table can be read", table)
    h.check(table["header"][:2] == ["protocol", "n"], "columns protocol, n", table["header"])
    got = [[c.replace(",", "") for c in r["cells"][:2]] for r in table["rows"]]
    h.check(got == rest, "'Results' equals POST /api/v1/sql's rows", (got, rest))
    print(f"sql: results {got}", flush=True)
    h.shot("sql")


def flow_deep_link(h):
    p = h.page
    c_from, c_to = h.truth.phase_window("C")
    want_c = sum(1 for r in h.truth.token if r["phase"] == "C")
    rid = h.state.get("entry_id")
    if rid is None:
        st, v = h.api("/api/v1/entries", {"kfl": TOKEN_KFL, "from": c_from, "to": c_to, "limit": 1})
        h.require(st == 200 and v["entries"], "an entry to link to", v)
        rid = v["entries"][0]["id"]
    st, entry = h.api(f"/api/v1/entries/{urllib.parse.quote(rid)}")
    h.require(st == 200, "the entry exists", entry)
    link = h.url + "/?" + urllib.parse.urlencode({"kfl": TOKEN_KFL, "from": c_from, "to": c_to, "entry": rid})
    p.goto(link)
    p.reload()
    h.expect_count(want_c, "deep link: Token requests of phase C")
    d = h.detail()
    h.check(h.wait_for(d.is_visible, True) is True, "deep link: 'Entry detail' open", "not visible")
    sel = h.grid().locator(f'[data-id="{rid}"]')
    text = h.wait_for(lambda: d.inner_text(), lambda t: entry["path"] in t and rid in t)
    h.check(entry["path"] in (text or "") and rid in (text or ""),
            f"the detail shows entry {rid} (its id and path {entry['path']})", (text or "")[:300])
    h.check(h.query_params().get("entry") == rid, "URL keeps entry", h.location())
    try:
        aria = sel.first.get_attribute("aria-selected", timeout=3000) if sel.count() else None
    except Exception:  # noqa: BLE001
        aria = None
    print(f"deep link: row {rid} aria-selected={aria}", flush=True)
    h.shot("deep-link")


def flow_live_tail(h):
    p = h.page
    p.goto(h.url + "/")
    h.apply_kfl("")
    live = h.button("Live")
    sockets = []
    p.on("websocket", lambda ws: sockets.append(ws.url))
    live.click()
    pressed = h.wait_for(lambda: live.get_attribute("aria-pressed"), "true")
    h.check(pressed == "true", "'Live' is pressed", pressed)
    ws = h.wait_for(lambda: [u for u in sockets if "/api/v1/stream" in u], lambda x: len(x) > 0)
    h.check(bool(ws), "Live opens the /api/v1/stream WebSocket", sockets)
    h.pause(0.5)  # the server subscribes on the upgrade
    node = f"live-tail-{os.getpid()}"
    before = {r[0] for r in h.rows()}
    pcap = os.path.join(h.truth.corpus, "pcaps", "http1_keepalive.pcap")
    r = subprocess.run([h.args.bin, "import", "--server", h.args.flight, "--node", node, pcap],
                       capture_output=True, text=True, timeout=120, env=h.import_env)
    end = time.time()
    h.require(r.returncode == 0, "wiretrail import succeeds", r.stderr[-400:])

    def fresh():
        return [(rid, cells) for rid, cells, text in h.rows()
                if rid not in before and node in text and tokens(cells) & h.truth.keepalive_uris]
    got = h.wait_for(fresh, lambda rows: len(rows) > 0, timeout=10)
    took = time.time() - end
    h.check(isinstance(got, list) and len(got) > 0, f"a row of node {node} (http1_keepalive) appears in 'Entries'",
            got)
    h.check(took <= 2.0, "within 2 s of the import's end", f"{took:.2f} s")
    n = h.truth.keepalive_requests
    got = h.wait_for(fresh, lambda rows: len(rows) == n, timeout=10)
    h.check(len(got) == n, f"all {n} requests of the capture (tshark) arrive in the list", len(got))
    h.expect_count(n, "the live list counts what arrived", timeout=5)
    h.shot("traffic-live")
    live.click()


# ----------------------------------------------------------------------------------------------
# Token authentication (`up --auth tokens`): run with --token-viewer/--token-admin/--token-agent.

WRONG_TOKEN = "wt_" + "A" * 43  # well-formed, unknown to the server


def signin_form(h):
    return h.page.get_by_role("form", name="Sign in", exact=True)


def storage(h):
    return h.page.evaluate("""() => ({session: Object.assign({}, sessionStorage),
                                      local: Object.assign({}, localStorage), href: location.href})""")


def expect_signin_screen(h, what):
    form = signin_form(h)
    shown = h.wait_for(lambda: form.count() == 1 and form.is_visible(), True)
    h.require(shown is True, f"the sign-in screen ({what}): a form 'Sign in'", shown)
    box = form.get_by_role("textbox", name="Access token", exact=True)
    h.check(box.count() == 1 and box.get_attribute("type") == "password",
            "a textbox 'Access token' of type password", box.count() and box.get_attribute("type"))
    h.check(form.get_by_role("button", name="Sign in", exact=True).count() == 1, "a button 'Sign in'", "missing")
    h.check(h.button("Sign out").count() == 0, "no 'Sign out' while signed out", h.button("Sign out").count())
    h.check(h.textbox("KFL filter").count() == 0, "no view behind the sign-in screen", "KFL filter shown")


def sign_in(h, token):
    form = signin_form(h)
    form.get_by_role("textbox", name="Access token", exact=True).fill(token)
    form.get_by_role("button", name="Sign in", exact=True).click()


def no_token_in_url_or_local(h, tokens):
    st = storage(h)
    leaked = [t for t in tokens if t and (t in st["href"] or any(t in v for v in st["local"].values()))]
    h.check(not leaked, "no token in the URL or localStorage", {"href": st["href"], "local": st["local"]})
    return st


def flow_auth_sign_in(h):
    p = h.page
    # Signed out, every API call of the page answers 401: the sign-in screen, nothing else.
    h.allow_refused = [(401, "GET", "/api/v1/")]
    deep = h.url + "/?" + urllib.parse.urlencode({"kfl": TOKEN_KFL})
    p.goto(deep)
    expect_signin_screen(h, "first visit")
    h.check(h.location() == deep, "the deep link's URL is kept while signed out", h.location())
    h.shot("auth-signin")

    # A wrong token: an alert with the server's message, still signed out.
    sign_in(h, WRONG_TOKEN)
    alert = signin_form(h).get_by_role("alert")
    text = h.wait_for(lambda: alert.inner_text(timeout=1000), lambda t: "not valid" in t)
    h.check("not valid" in (text or ""), "an alert with the server's message (token not valid)", text)
    h.check(WRONG_TOKEN not in (text or ""), "the alert does not repeat the token", text)
    h.check(signin_form(h).is_visible() and h.button("Sign out").count() == 0, "still signed out", "signed in?")
    h.check(not storage(h)["session"], "nothing kept in sessionStorage after a refused token", storage(h))
    h.shot("auth-wrong-token")

    # The viewer's token: the deep link's screen loads as it was.
    sign_in(h, h.args.token_viewer)
    gone = h.wait_for(lambda: signin_form(h).count(), 0)
    h.require(gone == 0, "the sign-in screen goes away after the viewer's token", gone)
    h.allow_refused = []
    want_all = len(h.truth.token)
    h.check(want_all == 112, "the client record holds 112 Token requests", want_all)
    h.expect_count(want_all, "signed in as viewer: the deep link's Token query, default window")
    h.check(h.query_params().get("kfl") == TOKEN_KFL, f"URL kfl = {TOKEN_KFL!r} (the deep link survived)",
            h.location())
    h.check(h.button("Sign out").count() == 1, "a button 'Sign out' in the top bar", h.button("Sign out").count())
    st = no_token_in_url_or_local(h, [h.args.token_viewer])
    h.check(h.args.token_viewer in st["session"].values(), "the token is kept in sessionStorage", list(st["session"]))
    rows = h.all_rows()
    h.check(len(rows) == want_all, f"{want_all} rows in 'Entries'", len(rows))
    h.shot("auth-viewer-traffic")


def flow_auth_sql_download(h):
    p = h.page
    w_from, w_to = h.truth.whole_window()
    p.goto(h.url + "/sql?" + urllib.parse.urlencode({"from": w_from, "to": w_to}))
    box = h.textbox("SQL query")
    box.wait_for(timeout=WAIT * 1000)
    box.fill(SQL)
    h.button("Run").click()
    want = sorted(h.truth.by_protocol.items())
    table = h.wait_for(lambda: h.read_table(h.table("Results")), lambda t: isinstance(t, dict) and len(t["rows"]) == len(want))
    got = [[c.replace(",", "") for c in r["cells"][:2]] for r in table["rows"]] if isinstance(table, dict) else table
    h.check(got == [[k, str(n)] for k, n in want], "'Results' (viewer's token) = requests per protocol (counts.json)",
            (got, want))
    with p.expect_download(timeout=60_000) as dl:
        h.link("Download CSV").click()
    saved = os.path.join(h.args.out, "auth-query.csv")
    dl.value.save_as(saved)
    with open(saved, newline="") as f:
        csv_rows = list(csv.reader(f))
    h.check(csv_rows[:1] == [["protocol", "n"]] and sorted((r[0], int(r[1])) for r in csv_rows[1:]) == want,
            "'Download CSV' with the token holds the query's rows", csv_rows[:10])


def flow_auth_forbidden(h):
    p = h.page
    c_from, c_to = h.truth.phase_window("C")
    p.goto(h.url + "/snapshots?" + urllib.parse.urlencode({"kfl": TOKEN_KFL, "from": c_from, "to": c_to}))
    h.textbox("Snapshot name").wait_for(timeout=WAIT * 1000)
    h.allow_refused = [(403, "POST", "/api/v1/snapshots")]
    h.textbox("Snapshot name").fill(f"ui-viewer-{os.getpid()}")
    h.button("Create snapshot").click()
    alert = p.get_by_role("alert").filter(has_text="Your role may not")
    text = h.wait_for(lambda: alert.first.inner_text(timeout=1000), lambda t: "may not" in t)
    h.check("Your role may not" in (text or "") and "admin" in (text or ""),
            "an alert in place: 'Your role may not …' (needs admin)", text)
    h.check(signin_form(h).count() == 0, "a 403 does not show the sign-in screen", "sign-in shown")
    h.check(h.button("Sign out").count() == 1, "still signed in", "no 'Sign out'")
    h.shot("auth-forbidden")
    h.allow_refused = []


def flow_auth_sign_out(h):
    p = h.page
    h.button("Sign out").click()
    expect_signin_screen(h, "after 'Sign out'")
    h.check(not storage(h)["session"], "sessionStorage is empty after 'Sign out'", storage(h)["session"])
    # A reload stays signed out (its calls answer 401).
    h.allow_refused = [(401, "GET", "/api/v1/")]
    p.reload()
    expect_signin_screen(h, "reload after 'Sign out'")
    h.shot("auth-signed-out")


def flow_auth_admin_snapshot(h):
    # From the sign-in screen as admin: create a snapshot and download its bundle with the token.
    sign_in(h, h.args.token_admin)
    gone = h.wait_for(lambda: signin_form(h).count(), 0)
    h.require(gone == 0, "the sign-in screen goes away after the admin's token", gone)
    h.pause(0.5)
    h.allow_refused = []
    flow_snapshot(h)
    no_token_in_url_or_local(h, [h.args.token_admin, h.args.token_viewer])
    h.button("Sign out").click()
    expect_signin_screen(h, "admin signed out")


AUTH_FLOWS = [flow_auth_sign_in, flow_auth_sql_download, flow_live_tail, flow_auth_forbidden,
              flow_auth_sign_out, flow_auth_admin_snapshot]


def flow_no_errors(h):
    h.check(not h.console_errors, "no console errors", h.console_errors)
    h.check(not h.failed_requests, "no failed requests (≥ 400 other than the deliberate validate call)",
            h.failed_requests)
    if h.aborted:
        print(f"requests the page aborted itself (not counted): {h.aborted}", flush=True)
    if h.refused:
        print(f"deliberate refusals (not counted): {len(h.refused)}: "
              f"{sorted({(st, m, urllib.parse.urlsplit(u).path) for _, st, m, u in h.refused})}", flush=True)


FLOWS = [flow_token_query, flow_bad_kfl, flow_histogram_brush, flow_service_map, flow_map_compare,
         flow_snapshot, flow_sql, flow_deep_link, flow_live_tail, flow_no_errors]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="the dashboard, e.g. http://127.0.0.1:8899")
    ap.add_argument("--flight", required=True, help="ingest URL for `wiretrail import --server`")
    ap.add_argument("--bin", required=True, help="the wiretrail binary")
    ap.add_argument("--corpus", required=True, help="the corpus directory (pcaps/, truth/)")
    ap.add_argument("--out", required=True, help="directory for screenshots and downloads")
    ap.add_argument("--only", default="", help="comma-separated flow names to run (default: all)")
    ap.add_argument("--headed", action="store_true")
    ap.add_argument("--token-viewer", default="", help="run the token flows (`up --auth tokens`): a viewer token")
    ap.add_argument("--token-admin", default="", help="with --token-viewer: an admin token")
    ap.add_argument("--token-agent", default="", help="with --token-viewer: an agent token for `wiretrail import`")
    args = ap.parse_args()
    if args.token_viewer and not (args.token_admin and args.token_agent):
        ap.error("--token-viewer needs --token-admin and --token-agent")
    os.makedirs(args.out, exist_ok=True)
    truth = Truth(args.corpus)
    h = Harness(args, truth)
    all_flows = FLOWS
    if args.token_viewer:
        all_flows = AUTH_FLOWS + [flow_no_errors]
        # Tokens come from the environment, never the command line of the import.
        h.import_env["WIRETRAIL_TOKEN"] = args.token_agent
    flows = all_flows
    if args.only:
        names = set(args.only.split(","))
        flows = [f for f in all_flows if f.__name__.removeprefix("flow_") in names] + [flow_no_errors]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=not args.headed, args=ARGS)
        ctx = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True,
                                  timezone_id="UTC")
        ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=h.url)
        ctx.set_default_timeout(WAIT * 1000)
        h.page = ctx.new_page()
        h.attach(h.page)
        for f in flows:
            h.run(f)
        browser.close()
    if h.failures:
        print("\nfailures:")
        for flow, exp, seen in h.failures:
            try:
                s = seen if isinstance(seen, str) else json.dumps(seen, default=str)
            except (TypeError, ValueError):
                s = repr(seen)
            print(f"  [{flow}] expected: {exp}\n      seen: {s[:2000]}")
    print("screenshots:", *h.shots, sep="\n  ")
    print(f"{h.passed} passed, {h.failed} failed")
    sys.exit(1 if h.failed else 0)


if __name__ == "__main__":
    main()
